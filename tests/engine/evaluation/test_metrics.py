"""Metrics (engine/evaluation/metrics.py): Levenshtein distance, exact match, edit similarity."""

from __future__ import annotations

import random

import pytest

from deepfim.engine.evaluation.metrics import edit_similarity, exact_match, levenshtein


def _dp(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_levenshtein_matches_dynamic_programming():
    rng = random.Random(0)
    for _ in range(400):
        a = "".join(rng.choice("ab c\n") for _ in range(rng.randint(0, 80)))
        b = "".join(rng.choice("ab c\n") for _ in range(rng.randint(0, 150)))
        assert levenshtein(a, b) == _dp(a, b), (a, b)
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3


def test_levenshtein_handles_long_strings_and_unicode():
    a = "def föö(x):\n    return x  # 😀\n" * 200
    assert levenshtein(a, a) == 0
    assert levenshtein(a, a.replace("😀", "🙂")) == 200


def test_exact_match_and_edit_similarity_ignore_trailing_whitespace():
    assert exact_match("return x  \n", "return x")
    assert exact_match("a  \nb\n\n", "a\nb")
    assert not exact_match("return  x", "return x")
    assert edit_similarity("abcd", "abcd ") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("", "abc") == 0.0
    assert edit_similarity("abcd", "abxd") == pytest.approx(0.75)
