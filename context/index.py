"""The in-memory index: file entries plus the structures derived from them.

Every `put`/`remove` keeps the derived structures consistent incrementally (definition
names -> files, lexical postings, import graph), so re-indexing one edited file costs that
file's parse, not a rebuild. Not thread-safe: `Workspace` holds its lock around every call.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from deepfim.context.graph import ImportGraph
from deepfim.context.lexical import LexicalIndex
from deepfim.context.records import FileEntry, IndexStats, SkipRecord

W_PRIOR = 0.05  # small next to any ranking signal (ranking.py): it only orders the fill


def prior_scores(graph: ImportGraph, entries: dict[str, FileEntry]) -> dict[str, float]:
    """Cursor-independent fill order: files imported by many others first, code before text."""
    most = max((len(graph.reverse.get(rel, ())) for rel in entries), default=0)
    scale = math.log1p(most) or 1.0
    return {
        rel: W_PRIOR * (math.log1p(len(graph.reverse.get(rel, ()))) / scale + (0.1 if entry.definitions else 0.0))
        for rel, entry in entries.items()
    }


class WorkspaceIndex:
    def __init__(self) -> None:
        self.entries: dict[str, FileEntry] = {}
        self.skipped: dict[str, SkipRecord] = {}
        self.graph = ImportGraph()
        self.definers: dict[str, set[str]] = defaultdict(set)
        self.lexical = LexicalIndex()
        self.generation = 0
        self._prior_generation = -1
        self._prior: dict[str, float] = {}
        self._prior_order: list[str] = []

    def load(self, entries: dict[str, FileEntry], skipped: dict[str, SkipRecord], lexical: dict | None = None) -> bool:
        """Replaces everything (a cache load); derived structures are rebuilt in bulk, except
        the lexical postings when `lexical` (a saved `LexicalIndex.payload()`) matches.

        Returns:
            Whether the saved lexical postings were used.
        """
        self.entries = dict(entries)
        self.skipped = dict(skipped)
        self.definers = defaultdict(set)
        saved = LexicalIndex.from_payload(lexical, self.entries) if lexical is not None else None
        self.lexical = saved or LexicalIndex()
        for entry in self.entries.values():
            for d in entry.definitions:
                self.definers[d.name].add(entry.rel)
            if saved is None:
                self.lexical.add(entry)
        self.graph.set_entries(self.entries)
        self.generation += 1
        return saved is not None

    def _link(self, entry: FileEntry) -> None:
        for d in entry.definitions:
            self.definers[d.name].add(entry.rel)
        self.lexical.add(entry)

    def _unlink(self, entry: FileEntry) -> None:
        for d in entry.definitions:
            names = self.definers.get(d.name)
            if names is not None:
                names.discard(entry.rel)
                if not names:
                    del self.definers[d.name]
        self.lexical.remove(entry)

    def put(self, entry: FileEntry) -> FileEntry | None:
        """Adds or replaces an entry; returns the entry it replaced."""
        old = self.entries.get(entry.rel)
        if old is not None:
            self._unlink(old)
        self.entries[entry.rel] = entry
        self.skipped.pop(entry.rel, None)
        self._link(entry)
        self.graph.put(entry)
        self.generation += 1
        return old

    def remove(self, rel: str) -> FileEntry | None:
        old = self.entries.pop(rel, None)
        if old is not None:
            self._unlink(old)
            self.graph.remove(rel)
            self.generation += 1
        return old

    def skip(self, rel: str, record: SkipRecord) -> bool:
        """Records why `rel` is left out; True if that changed anything."""
        removed = self.remove(rel) is not None
        changed = removed or self.skipped.get(rel) != record
        self.skipped[rel] = record
        return changed

    def forget(self, rel: str) -> bool:
        """Drops every trace of `rel`; True if there was one."""
        removed = self.remove(rel) is not None
        return self.skipped.pop(rel, None) is not None or removed

    def ensure(self) -> None:
        """Brings the import graph and the fill order up to date."""
        self.graph.ensure()
        if self._prior_generation != self.generation:
            self._prior = prior_scores(self.graph, self.entries)
            self._prior_order = sorted(self._prior, key=lambda rel: (-self._prior[rel], rel))
            self._prior_generation = self.generation

    @property
    def prior(self) -> dict[str, float]:
        return self._prior

    @property
    def prior_order(self) -> list[str]:
        """Every file, most central first: the order a large budget is filled in."""
        return self._prior_order

    def stats(self) -> IndexStats:
        files, defs, size = Counter(), Counter(), Counter()
        for entry in self.entries.values():
            files[entry.language] += 1
            defs[entry.language] += len(entry.definitions)
            size[entry.language] += entry.size
        skipped = Counter(record.reason for record in self.skipped.values())
        return IndexStats(
            files=sum(files.values()),
            files_by_language=dict(sorted(files.items(), key=lambda kv: (-kv[1], kv[0]))),
            definitions=sum(defs.values()),
            definitions_by_language=dict(sorted(defs.items())),
            bytes=sum(size.values()),
            bytes_by_language=dict(sorted(size.items())),
            skipped=dict(sorted(skipped.items())),
            imports=self.graph.edge_count,
        )
