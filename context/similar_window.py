"""The most similar window of lines in a text: the evidence's "similar code" search
(`evidence._similar`) for each candidate file.

A window is `width` consecutive lines; its score is the Jaccard similarity of its identifiers
(the union of its lines' sets) with the query's. Every window of every candidate file is scored
at every new cursor line, so it is computed for all windows at once: an identifier occurrence
at line i whose previous occurrence is at line p is the first one inside exactly the windows
starting in [max(i - width + 1, p + 1), i], so a window's distinct-identifier count is a prefix
sum over those ranges, and its count of query identifiers the same sum over the occurrences of
query identifiers. The occurrences are built once per text (kept with it, LRU); per query a
candidate costs a few vector operations instead of a Python loop over its identifiers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from deepfim.context.lexical import IDENTIFIER

LINE_CACHE_FILES = 128  # also how many files `Workspace.read_ahead` prepares


@dataclass
class Occurrences:
    """Each line's identifiers as (line, id) pairs, with the previous line holding the same id."""

    vocab: dict[str, int]
    line: np.ndarray
    ident: np.ndarray
    prev: np.ndarray  # -1 where the identifier did not occur before
    n_lines: int
    _union: dict[int, np.ndarray] = field(default_factory=dict)  # by width

    @classmethod
    def of(cls, idents: list[frozenset[str]]) -> Occurrences:
        vocab: dict[str, int] = {}
        ids = [vocab.setdefault(name, len(vocab)) for names in idents for name in names]
        line = np.repeat(np.arange(len(idents), dtype=np.int64), [len(names) for names in idents])
        ident = np.array(ids, dtype=np.int64)
        prev = np.full(len(line), -1, dtype=np.int64)
        if len(line) > 1:
            order = np.lexsort((line, ident))  # by identifier, then line
            same = ident[order[1:]] == ident[order[:-1]]
            prev[order[1:][same]] = line[order[:-1][same]]
        return cls(vocab, line, ident, prev, len(idents))

    def counts(self, width: int, keep: np.ndarray | None = None) -> np.ndarray:
        """Distinct identifiers (those `keep` marks, by occurrence) of each window: lines
        s..s+width-1 for s in 0..n_lines-width."""
        windows = self.n_lines - width + 1
        lo, hi = np.maximum(self.line - width + 1, self.prev + 1), self.line
        if keep is not None:
            lo, hi = lo[keep], hi[keep]
        lo, hi = np.maximum(lo, 0), np.minimum(hi, windows - 1)
        inside = lo <= hi
        starts = np.bincount(lo[inside], minlength=windows + 1)
        ends = np.bincount(hi[inside] + 1, minlength=windows + 1)
        return np.cumsum(starts - ends)[:windows]

    def union(self, width: int) -> np.ndarray:
        if width not in self._union:
            self._union[width] = self.counts(width)
        return self._union[width]


def best_window(occ: Occurrences, query: frozenset[str], width: int, skip: tuple[int, int]) -> tuple[float, int]:
    """(Jaccard similarity, first line) of the `width`-line window whose identifiers are most like
    `query`'s (the first of equals), among windows that share some and do not overlap lines
    skip[0]..skip[1] (-1: none); (0.0, -1) when there is none."""
    windows = occ.n_lines - width + 1
    ids = [occ.vocab[name] for name in query if name in occ.vocab]
    if windows <= 0 or not ids:
        return 0.0, -1
    wanted = np.zeros(len(occ.vocab), dtype=bool)
    wanted[ids] = True
    shared = occ.counts(width, wanted[occ.ident])
    start = np.arange(windows)
    valid = (shared > 0) & ~((skip[0] - width < start) & (start <= skip[1]))
    if not valid.any():
        return 0.0, -1
    scores = np.where(valid, shared / (len(query) + occ.union(width) - shared), 0.0)
    at = int(np.argmax(scores))
    return float(scores[at]), at


class LineIndex:
    """Lines and their identifier occurrences of recently searched texts, by content (LRU)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[str, tuple[list[str], Occurrences]] = OrderedDict()

    def of(self, text: str) -> tuple[list[str], Occurrences]:
        found = self._cache.get(text)
        if found is None:
            lines = text.split("\n")
            found = (lines, Occurrences.of([frozenset(IDENTIFIER.findall(line)) for line in lines]))
            self._cache[text] = found
            while len(self._cache) > LINE_CACHE_FILES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return found
