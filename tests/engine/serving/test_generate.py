"""Generation: greedy and sampled decoding, stop rules, streaming, abort, speculation."""

from __future__ import annotations

import random

import pytest
import torch

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.api import SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.generate import generate
from deepfim.engine.serving.healing import HealingVocab
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.sampler import StopChecker, loop_safe_end, repeated_lines_cut, sample
from deepfim.engine.serving.speculative import NgramDrafter, SpeculativeConfig


@pytest.fixture(scope="module")
def runner(tiny_model, tiny_checkpoint):
    return ModelRunner(tiny_model, Tokenizer.from_file(tiny_checkpoint), None, SpeculativeConfig(enabled=False))


PROMPT = list(range(40, 140))


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


def test_top_p_keeps_only_the_nucleus():
    logits = torch.tensor([5.0, 4.0, -10.0, -10.0])
    draws = {sample(logits, SamplingParams(temperature=1.0, top_p=0.5), torch.Generator().manual_seed(s))[0]
             for s in range(50)}  # fmt: skip
    assert draws == {0}


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
    cand = generate(runner, PROMPT, SamplingParams(max_tokens=16, stop=(stop,)), lambda i, t: streamed.append(t))[0]
    assert cand.finish_reason == "stop"
    assert cand.text == full[: full.index(stop)]
    assert "".join(streamed) == cand.text


def test_stop_checker_holds_back_a_possible_stop_prefix():
    checker = StopChecker(("\n\n", "END"))
    assert checker.safe_prefix("abc\n") == 3
    assert checker.safe_prefix("abcEN") == 3
    assert checker.find("x\n\ny", 1) == 1


def test_a_block_written_three_times_is_cut_after_its_first_copy():
    one = "        G = nx.Graph()\n"
    assert repeated_lines_cut("    x = 1\n" + one * 3, 0) == len("    x = 1\n" + one)
    pair = "a = f()\nb = g(a)\n"
    assert repeated_lines_cut("start\n" + pair * 3 + "tail", 0) == len("start\n" + pair)
    assert repeated_lines_cut(pair * 2, 0) is None  # two copies may be meant
    assert repeated_lines_cut("x\n\n\n\n", 0) is None  # blank lines are not a loop
    assert repeated_lines_cut(one * 3, len(one * 3)) is None  # no line completed by the new text


def test_streaming_never_shows_what_a_loop_cut_removes():
    """Random texts over a few lines (so loops are frequent), written in random pieces."""
    rng = random.Random(0)
    for _ in range(300):
        text = "".join(rng.choice(["a\n", "b\n", "  c\n", "\n", "a", "b"]) for _ in range(rng.randrange(4, 30)))
        streamed, pos, cut = 0, 0, None
        while pos < len(text) and cut is None:
            before, pos = pos, min(len(text), pos + rng.randrange(1, 5))
            cut = repeated_lines_cut(text[:pos], before)
            if cut is None:
                streamed = max(streamed, loop_safe_end(text[:pos]))
        final = text[:cut] if cut is not None else text[:pos]
        assert streamed <= len(final), (text, streamed, final)


def test_abort_between_steps(runner):
    steps = {"n": 0}

    def should_stop():  # prefill of 100 tokens takes 7 chunks; stop a few tokens into decoding
        steps["n"] += 1
        return steps["n"] > 10

    cand = generate(runner, PROMPT, SamplingParams(max_tokens=50), should_stop=should_stop)[0]
    assert cand.finish_reason == "cancelled" and 0 < len(cand.token_ids) < 50


def test_ngram_drafter_proposes_the_continuation_of_the_last_match():
    d = NgramDrafter([1, 2, 3, 4, 5, 9, 1, 2, 3], n=3)
    assert d.propose(3) == [4, 5, 9]
    d.append(7)
    assert d.propose(3) == []


def test_ngram_drafter_agrees_with_a_brute_force_search():
    rng = random.Random(1)
    tokens = [rng.randrange(6) for _ in range(300)]
    drafter = NgramDrafter(tokens, n=3)
    for _ in range(400):  # the buffer (2 x 300 at first) grows on the way
        tail = tokens[-3:]
        ends = [e for e in range(3, len(tokens)) if tokens[e - 3 : e] == tail]
        assert drafter.propose(4) == (tokens[ends[-1] : ends[-1] + 4] if ends else [])
        tokens.append(rng.randrange(6))
        drafter.append(tokens[-1])
    assert drafter.tokens == tokens


def test_speculative_greedy_equals_plain_greedy(tiny_model, runner, monkeypatch):
    """Drafts that are partly right and partly wrong: verification keeps exactly greedy output."""
    plain = generate(runner, PROMPT, SamplingParams(max_tokens=40, speculative=False))[0].token_ids
    import deepfim.engine.serving.model_runner as model_runner

    class HalfRightDrafter:
        def __init__(self, tokens, n):
            self.tokens = list(tokens)

        def append(self, token):
            self.tokens.append(token)

        def propose(self, k):
            done = len(self.tokens) - len(PROMPT)
            guess = plain[done : done + k]
            if len(guess) >= 3:
                guess[2] = (guess[2] + 1) % 8192  # the third draft is always wrong
            return guess

    monkeypatch.setattr(model_runner, "NgramDrafter", HalfRightDrafter)
    spec_runner = ModelRunner(tiny_model, runner.tokenizer, None, SpeculativeConfig(enabled=True, max_draft=5))
    spec = generate(spec_runner, PROMPT, SamplingParams(max_tokens=40))[0]
    assert spec.token_ids == plain
    stats = spec_runner.draft_stats.as_dict()["ngram"]
    assert stats["accepted"] >= 2 * spec_runner.draft_stats.rounds - 2  # two of each round's drafts were right


def test_mtp_drafts_keep_greedy_output_identical(tiny_model, runner):
    plain = generate(runner, PROMPT, SamplingParams(max_tokens=30, speculative=False))[0].token_ids
    # MTP drafts are for the module path (GPU): on the CPU decode step they cost more than they save
    assert ModelRunner(tiny_model, runner.tokenizer, None, SpeculativeConfig(enabled=True)).mtp is None
    # n-gram lookups of 50 tokens never match here, so every draft comes from the MTP block
    mtp_runner = ModelRunner(
        tiny_model, runner.tokenizer, None, SpeculativeConfig(enabled=True, ngram=50), decode_step=False
    )
    assert mtp_runner.mtp is not None
    spec = generate(mtp_runner, PROMPT, SamplingParams(max_tokens=30))[0].token_ids
    assert spec == plain
    stats = mtp_runner.draft_stats.as_dict()["mtp"]
    assert stats["proposed"] >= 10 and 0 <= stats["accepted"] <= stats["proposed"]


def test_healing_vocab_allows_exactly_the_tokens_consistent_with_the_rest():
    tok = Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")
    vocab = HealingVocab(tok, 8192)
    texts = [tok.decode([i]) for i in range(8192)]
    for rest in ["_", "normalize_", "    ", "        ", ".", "self", "é", "(x"]:
        want = {
            i for i, t in enumerate(texts)
            if t and "\ufffd" not in t and i not in tok.special_id_set and (t.startswith(rest) or rest.startswith(t))
        }  # fmt: skip
        assert set(vocab.allowed(rest).nonzero().flatten().tolist()) == want, rest
        assert want, rest
