"""Which span of a file becomes the middle of a FIM sample (engine/training/spans.py)."""

from __future__ import annotations

import random

import pytest

from deepfim.engine.training.spans import SPAN_KINDS, choose_span

REPORT = """def total_area(items):
    total = 0.0
    for item in items:
        if item is None:
            continue
        total += item.area()
    return total


def main():
    print(total_area([1, 2]))
"""


@pytest.mark.parametrize("kind", SPAN_KINDS)
def test_spans_stay_in_bounds_and_respect_lines(kind):
    rng = random.Random(11)
    for _ in range(50):
        a, b = choose_span(REPORT, kind, rng, max_chars=200)
        assert 0 <= a <= b <= len(REPORT) and b - a <= 200
        if kind in ("lines", "block"):
            assert a == 0 or REPORT[a - 1] == "\n"
        if kind == "block":
            assert REPORT[a:b].endswith("\n") and REPORT[a:b].startswith("    ")
