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
    """identifier -> ids of the files containing it, maintained incrementally.

    A path keeps its integer id for the life of the index (an edit re-adds it under the same
    id), so the postings stay compact lists and can be saved with the index cache: rebuilding
    them means touching every identifier of every file, the biggest part of a warm start.
    """

    def __init__(self) -> None:
        self._postings: dict[str, list[int]] = {}
        self._ids: dict[str, int] = {}
        self._rels: list[str] = []
        self._live: set[int] = set()
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
        file_id = self._ids.get(entry.rel)
        if file_id is None:
            file_id = self._ids[entry.rel] = len(self._rels)
            self._rels.append(entry.rel)
        elif file_id in self._live:
            raise ValueError(f"{entry.rel} is already in the lexical index")
        self._live.add(file_id)
        postings = self._postings
        for ident in _file_identifiers(entry):
            posting = postings.get(ident)
            if posting is None:
                postings[ident] = [file_id]
            else:
                posting.append(file_id)

    def remove(self, entry: FileEntry) -> None:
        file_id = self._ids.get(entry.rel)
        if file_id is None or file_id not in self._live:
            return
        self._live.discard(file_id)
        for ident in _file_identifiers(entry):
            posting = self._postings.get(ident)
            if posting is None:
                continue
            try:
                posting.remove(file_id)
            except ValueError:
                continue
            if not posting:
                del self._postings[ident]

    def payload(self) -> dict:
        """The postings in msgpack-ready form (see `from_payload`)."""
        return {
            "rels": [rel if i in self._live else None for i, rel in enumerate(self._rels)],
            "postings": self._postings,
        }

    @classmethod
    def from_payload(cls, payload: dict, entries: dict[str, FileEntry]) -> LexicalIndex | None:
        """The index saved by `payload()`, or None unless it covers exactly `entries`."""
        try:
            rels, postings = payload["rels"], payload["postings"]
            live = {rel for rel in rels if rel is not None}
            if live != entries.keys() or len(live) != sum(rel is not None for rel in rels):
                return None
            index = cls()
            index._rels = [rel if rel is not None else "" for rel in rels]
            index._ids = {rel: i for i, rel in enumerate(rels) if rel is not None}
            index._live = set(index._ids.values())
            index._postings = postings
            return index
        except (KeyError, TypeError, AttributeError):
            return None

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
        files = len(self._live)
        if not window or files == 0:
            return []
        common = max(8, int(files * COMMON_SHARE))
        weights: dict[int, float] = defaultdict(float)
        for ident in window:
            posting = self._postings.get(ident)
            if not posting or len(posting) > common:
                continue
            idf = math.log(1 + files / len(posting))
            for file_id in posting:
                weights[file_id] += idf
        rels = self._rels
        ranked = ((rels[i], w) for i, w in weights.items() if rels[i] != exclude)
        best = heapq.nsmallest(limit, ranked, key=lambda kv: (-kv[1], kv[0]))
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
