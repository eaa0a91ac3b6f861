"""Lexical similarity between the code around the cursor and chunks of workspace files.

An inverted index maps each identifier to the files containing it. A query scores files
by the idf-weighted identifiers they share with the cursor window (identifiers found in
more than `COMMON_SHARE` of files are noise such as ``self`` and skipped), then computes the
Jaccard similarity of the window with each chunk of the best few files; a file's score is
its best chunk's. This is the "similar snippets" signal of Continue and Tabby, kept cheap
enough to run on every keystroke.
"""

from __future__ import annotations

import heapq
import math
import re
import threading
from collections import OrderedDict, defaultdict

from deepfim.context.records import FileEntry

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
COMMON_SHARE = 0.05
CHUNK_CANDIDATES = 8
CHUNK_CACHE_FILES = 256


def identifiers(text: str) -> set[str]:
    return set(IDENTIFIER.findall(text))


def chunk_identifiers(text: str, chunk_lines: int) -> tuple[str, ...]:
    """Identifiers (3+ characters) of each `chunk_lines`-line chunk, space-joined, first-seen order."""
    bounds, at = [0], 0
    while True:
        for _ in range(chunk_lines):
            at = text.find("\n", at) + 1
            if not at:
                break
        if not at:
            break
        bounds.append(at)
    bounds.append(len(text))
    findall = IDENTIFIER.findall
    return tuple(" ".join(dict.fromkeys(findall(text, a, b))) for a, b in zip(bounds, bounds[1:], strict=False))


def _file_identifiers(entry: FileEntry) -> set[str]:
    return set(" ".join(entry.chunks).split())


class LexicalIndex:
    """identifier -> files containing it, maintained incrementally."""

    def __init__(self) -> None:
        self._postings: dict[str, set[str]] = defaultdict(set)
        self._files = 0
        # chunk identifier sets of recently compared files, by digest: the files near one
        # cursor stay the same for many keystrokes
        self._chunk_sets: OrderedDict[str, list[frozenset[str]]] = OrderedDict()
        self._chunk_lock = threading.Lock()

    def _chunks_of(self, entry: FileEntry) -> list[frozenset[str]]:
        with self._chunk_lock:
            found = self._chunk_sets.get(entry.digest)
            if found is not None:
                self._chunk_sets.move_to_end(entry.digest)
                return found
        found = [frozenset(chunk.split()) for chunk in entry.chunks]
        with self._chunk_lock:
            self._chunk_sets[entry.digest] = found
            while len(self._chunk_sets) > CHUNK_CACHE_FILES:
                self._chunk_sets.popitem(last=False)
        return found

    def add(self, entry: FileEntry) -> None:
        rel, postings = entry.rel, self._postings
        for ident in _file_identifiers(entry):
            posting = postings.get(ident)
            if posting is None:
                postings[ident] = {rel}
            else:
                posting.add(rel)
        self._files += 1

    def remove(self, entry: FileEntry) -> None:
        rel = entry.rel
        for ident in _file_identifiers(entry):
            posting = self._postings.get(ident)
            if posting is not None:
                posting.discard(rel)
                if not posting:
                    del self._postings[ident]
        self._files -= 1

    def similar(
        self, window: set[str], entries: dict[str, FileEntry], exclude: str, limit: int = CHUNK_CANDIDATES
    ) -> list[tuple[str, float, int]]:
        """Files most similar to `window`: (rel, best chunk Jaccard, chunk index), best first.

        Args:
            window: identifiers of the code around the cursor.
            entries: the current index, for the candidates' chunks.
            exclude: the cursor file itself.
            limit: how many files get the (costlier) chunk comparison.
        """
        if not window or self._files == 0:
            return []
        common = max(8, int(self._files * COMMON_SHARE))
        weights: dict[str, float] = defaultdict(float)
        for ident in window:
            posting = self._postings.get(ident)
            if not posting or len(posting) > common:
                continue
            idf = math.log(1 + self._files / len(posting))
            for rel in posting:
                weights[rel] += idf
        weights.pop(exclude, None)
        best = heapq.nsmallest(limit, weights.items(), key=lambda kv: (-kv[1], kv[0]))
        results = []
        for rel, _ in best:
            entry = entries.get(rel)
            if entry is None:
                continue
            top, top_index = 0.0, 0
            for index, idents in enumerate(self._chunks_of(entry)):
                shared = len(window & idents)
                if shared:
                    score = shared / (len(window) + len(idents) - shared)
                    if score > top:
                        top, top_index = score, index
            if top > 0:
                results.append((rel, top, top_index))
        results.sort(key=lambda r: (-r[1], r[0]))
        return results
