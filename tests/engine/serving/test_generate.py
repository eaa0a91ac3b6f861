"""Generation through the model runner: greedy and sampled decoding, EOS and stop strings while
streaming, abort between steps."""

from __future__ import annotations

import pytest
import torch
from serving_support import PROMPT

from deepfim.engine.api import SamplingParams
from deepfim.engine.serving.generate import generate
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.speculative import SpeculativeConfig


def test_greedy_is_deterministic_and_matches_argmax(runner, tiny_model):
    a = generate(runner, PROMPT, SamplingParams(max_tokens=12))[0]
    b = generate(runner, PROMPT, SamplingParams(max_tokens=12))[0]
    assert a.token_ids == b.token_ids and len(a.token_ids) == 12 and a.finish_reason == "length"
    with torch.no_grad():  # the first token is the argmax of a plain forward
        first = int(tiny_model(torch.tensor([PROMPT])).logits[0, -1].argmax())
    assert a.token_ids[0] == first


def test_sampling_with_seed_is_reproducible_and_differs_from_greedy(runner):
    params = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, seed=7, n=3)
    a = generate(runner, PROMPT, params)
    b = generate(runner, PROMPT, params)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert len({tuple(c.token_ids) for c in a}) > 1  # three candidates, different draws


def test_eos_stops_generation(runner):
    plain = generate(runner, PROMPT, SamplingParams(max_tokens=10))[0]
    as_eos = ModelRunner(runner.model, runner.tokenizer, None, SpeculativeConfig(enabled=False))
    as_eos.eos = plain.token_ids[3]  # pretend the 4th greedy token is EOS
    cand = generate(as_eos, PROMPT, SamplingParams(max_tokens=10))[0]
    assert cand.finish_reason == "eos" and cand.token_ids == plain.token_ids[:3]
    assert cand.text == runner.tokenizer.decode(plain.token_ids[:3])


def test_stop_strings_cut_text_and_streaming_never_shows_them(runner):
    full = generate(runner, PROMPT, SamplingParams(max_tokens=16))[0].text
    assert len(full) > 6
    stop = full[3:6]
    streamed: list[str] = []
    cand = generate(runner, PROMPT, SamplingParams(max_tokens=16, stop=(stop,)), lambda i, t, m: streamed.append(t))[0]
    assert cand.finish_reason == "stop"
    assert cand.text == full[: full.index(stop)]
    assert "".join(streamed) == cand.text


def test_each_piece_streams_the_mean_log_probability_of_the_text_so_far(runner):
    means: list[float] = []
    cand = generate(runner, PROMPT, SamplingParams(max_tokens=12), lambda i, t, m: means.append(m))[0]
    assert cand.finish_reason == "length" and len(means) >= 2
    assert all(m <= 0.0 for m in means)
    # the last piece ends the text: its mean is the whole candidate's
    assert means[-1] == pytest.approx(cand.logprob / len(cand.token_ids), abs=1e-5)


def test_abort_between_steps(runner):
    steps = {"n": 0}

    def should_stop():  # prefill of 100 tokens takes 7 chunks; stop a few tokens into decoding
        steps["n"] += 1
        return steps["n"] > 10

    cand = generate(runner, PROMPT, SamplingParams(max_tokens=50), should_stop=should_stop)[0]
    assert cand.finish_reason == "cancelled" and 0 < len(cand.token_ids) < 50


def test_a_confidence_floor_stops_a_candidate_once_the_floor_is_out_of_reach(runner):
    """Greedy decoding with a floor: the same tokens as without, cut where the log-probability
    sum fell below floor * max_tokens (no continuation could lift the mean to the floor)."""
    full = generate(runner, PROMPT, SamplingParams(max_tokens=40))[0]
    floor = full.logprob / 40 / 4  # reached a quarter of the way, by the random model's logprobs
    cut = generate(runner, PROMPT, SamplingParams(max_tokens=40, confidence_floor=floor))[0]
    assert cut.finish_reason == "low_confidence"
    assert 1 < len(cut.token_ids) < len(full.token_ids) and full.token_ids[: len(cut.token_ids)] == cut.token_ids
    before = generate(runner, PROMPT, SamplingParams(max_tokens=len(cut.token_ids) - 1))[0]  # one token less
    assert cut.logprob < floor * 40 <= before.logprob
    never = generate(runner, PROMPT, SamplingParams(max_tokens=40, confidence_floor=-100.0))[0]
    assert never.token_ids == full.token_ids and never.finish_reason == full.finish_reason
