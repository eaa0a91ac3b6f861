"""Sampling and stop rules (engine/serving/sampler.py): nucleus sampling, stop strings held back
while they may still complete, loops cut after their first copy."""

from __future__ import annotations

import random

import torch

from deepfim.engine.api import SamplingParams
from deepfim.engine.serving.sampler import StopChecker, loop_safe_end, repeated_lines_cut, sample


def test_top_p_keeps_only_the_nucleus():
    logits = torch.tensor([5.0, 4.0, -10.0, -10.0])
    draws = {sample(logits, SamplingParams(temperature=1.0, top_p=0.5), torch.Generator().manual_seed(s))[0]
             for s in range(50)}  # fmt: skip
    assert draws == {0}


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
