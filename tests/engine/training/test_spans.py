"""Which span of a file becomes the middle of a FIM sample (engine/training/spans.py)."""

from __future__ import annotations

import random

import pytest

from deepfim.engine.training.spans import SPAN_KINDS, choose_span

STATS = """def mean(values):
    if not values:
        raise ValueError("no values")
    total = sum(values)
    return total / len(values)


def spread(values):
    return max(values) - min(values)
"""


@pytest.mark.parametrize("kind", SPAN_KINDS)
def test_spans_stay_in_bounds_and_respect_lines(kind):
    rng = random.Random(11)
    for _ in range(50):
        a, b = choose_span(STATS, kind, rng, max_chars=200)
        assert 0 <= a <= b <= len(STATS) and b - a <= 200
        if kind in ("lines", "block"):
            assert a == 0 or STATS[a - 1] == "\n"
        if kind == "block":
            assert STATS[a:b].endswith("\n") and STATS[a:b].startswith("    ")
