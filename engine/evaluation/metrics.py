"""FIM metrics: exact match and edit similarity.

Edit similarity is 1 − Levenshtein(a, b) / max(len a, len b) (CrossCodeEval's definition,
on characters). The distance uses Hyyrö's bit-parallel form of Myers' algorithm with
Python integers as bit vectors: one pass over `b` with a handful of big-int operations per
character, O(len(b) · len(a) / 64) word operations.
"""

from __future__ import annotations


def normalise(text: str) -> str:
    """Trailing whitespace stripped from every line and from the end."""
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


def exact_match(prediction: str, reference: str) -> bool:
    return normalise(prediction) == normalise(reference)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; each costs 1)."""
    if len(a) < len(b):
        a, b = b, a  # the bit vectors span the longer string; loop over the shorter one
    m = len(a)
    if m == 0:
        return len(b)
    if not b:
        return m
    peq: dict[str, int] = {}
    for i, ch in enumerate(a):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for ch in b:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ((ph << 1) | 1) & mask
        mh = (mh << 1) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
    return score


def edit_similarity(prediction: str, reference: str) -> float:
    """1 − distance / longer length, on normalised text; two empty strings are identical."""
    a, b = normalise(prediction), normalise(reference)
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - levenshtein(a, b) / longest
