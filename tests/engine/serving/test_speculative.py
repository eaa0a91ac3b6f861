"""Speculative decoding (engine/serving/speculative.py): the n-gram drafter, and verification
that keeps greedy output identical whatever the drafts (n-gram or MTP)."""

from __future__ import annotations

import random

from serving_support import PROMPT

from deepfim.engine.api import SamplingParams
from deepfim.engine.serving.generate import generate
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.speculative import NgramDrafter, SpeculativeConfig


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


def test_draft_length_drafts_only_what_pays_for_its_verification():
    """A C-step-like cost (7 tokens cost 3x one): a candidate keeping a fifth of its drafts gets
    none, one keeping most gets some; costs not yet seen are tried (and so measured)."""
    from deepfim.engine.serving.speculative import DraftLength

    length = DraftLength(16)
    assert length.best(0.2, 6) == 6  # nothing measured yet: the full draft is tried
    for tokens in range(1, 17):
        length.observe(tokens, 0.55 + 0.25 * tokens)  # ms: 0.8 for one token, 2.3 for seven
    assert length.best(0.2, 6) == 0
    assert 0 < length.best(0.9, 6) <= 6
    assert length.best(0.99, 15) > length.best(0.6, 15)
    flat = DraftLength(16)  # a GPU: more rows cost about the same
    for tokens in range(1, 17):
        flat.observe(tokens, 1.0)
    assert flat.best(0.2, 6) == 6


def test_ngram_drafts_stop_where_they_do_not_pay_and_greedy_output_stays(tiny_model, runner):
    """A real runner whose single-token calls are cheap against its measured multi-token calls:
    after its drafts are rejected a candidate stops drafting; the output is greedy's either way."""
    plain = generate(runner, PROMPT, SamplingParams(max_tokens=40, speculative=False))[0].token_ids
    spec_runner = ModelRunner(tiny_model, runner.tokenizer, None, SpeculativeConfig(enabled=True, max_draft=6))
    for tokens in range(1, 18):
        spec_runner.draft_length.observe(tokens, 0.5 + 10.0 * tokens)  # a draft never pays here
    out = generate(spec_runner, PROMPT, SamplingParams(max_tokens=40))[0]
    assert out.token_ids == plain
    assert spec_runner.draft_stats.as_dict().get("ngram", {"proposed": 0})["proposed"] == 0
