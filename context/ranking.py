"""Scores workspace files for a cursor position: which files are worth the prompt's tokens.

Signals split in two groups, because they change at different speeds:

* **structural** (stable while the user types in one file): imports of the cursor file,
  transitively with `import_decay` per hop; files importing it; the same directory;
  recently edited and opened files (recency-weighted); and a small prior for files many
  others import, so a large budget fills with the repository's hubs first.
* **cursor-driven** (change as the cursor moves): files defining identifiers used near the
  cursor (weighted by how specific the name is), and lexical similarity of file chunks to
  the code around the cursor (`lexical.py`).

The packer gives structural candidates first claim on the budget and places cursor-driven
ones after them (see `packer.py`), so moving the cursor never disturbs the stable part.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from deepfim.context.graph import ImportGraph, language_family
from deepfim.context.lexical import LexicalIndex
from deepfim.context.packer import Pick
from deepfim.context.records import FileEntry
from deepfim.context.settings import ContextSettings

W_IMPORT = 1.0
W_IMPORTER = 0.6
W_EDITED = 0.8
W_OPENED = 0.4
W_SAME_DIR = 0.3
W_DEFINES = 0.8
W_LEXICAL = 1.0
MAX_DEFINERS = 5  # a name defined in more files than this says little about which one is meant
MIN_NAME = 4  # shorter names (`inc`, `get`, `run`) are too generic to point at a definition


@dataclass
class Candidate:
    rel: str
    structural: float = 0.0
    cursor: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return self.structural + self.cursor


@dataclass
class RankInput:
    """Everything ranking reads, taken under the workspace lock."""

    cursor_rel: str
    cursor_imports: tuple[str, ...]
    window: set[str]  # identifiers near the cursor
    entries: dict[str, FileEntry]
    graph: ImportGraph
    definers: dict[str, set[str]]
    lexical: LexicalIndex
    edited: list[str]  # most recent first
    opened: list[str]  # most recent first
    settings: ContextSettings
    cursor_language: str = ""  # language id of the cursor file ("" when unknown)


def rank(inp: RankInput) -> dict[str, Candidate]:
    """Candidates (every indexed file except the cursor file) with scores and reasons."""
    s = inp.settings
    cands: dict[str, Candidate] = {}

    def cand(rel: str) -> Candidate | None:
        if rel == inp.cursor_rel or rel not in inp.entries:
            return None
        found = cands.get(rel)
        if found is None:
            found = cands[rel] = Candidate(rel)
        return found

    # imports, breadth-first with decay
    frontier, seen = list(inp.cursor_imports), {inp.cursor_rel}
    for depth in range(1, s.import_depth + 1):
        next_frontier = []
        for rel in frontier:
            if rel in seen:
                continue
            seen.add(rel)
            c = cand(rel)
            if c is not None:
                c.structural += W_IMPORT * s.import_decay ** (depth - 1)
                c.reasons.append("imported by the cursor file" if depth == 1 else f"imported at depth {depth}")
            next_frontier += inp.graph.imports_of(rel)
        frontier = next_frontier
    for rel in inp.graph.importers_of(inp.cursor_rel):
        c = cand(rel)
        if c is not None:
            c.structural += W_IMPORTER
            c.reasons.append("imports the cursor file")
    for i, rel in enumerate(inp.edited[: s.max_recent]):
        c = cand(rel)
        if c is not None:
            c.structural += W_EDITED / (1 + i)
            c.reasons.append("recently edited")
    for i, rel in enumerate(inp.opened[: s.max_recent]):
        c = cand(rel)
        if c is not None:
            c.structural += W_OPENED / (1 + i)
            c.reasons.append("open in the editor")
    for rel in inp.graph.files_in(posixpath.dirname(inp.cursor_rel)):
        if inp.entries[rel].definitions:
            c = cand(rel)
            if c is not None:
                c.structural += W_SAME_DIR
                c.reasons.append("same directory")

    # cursor-driven: definitions of names used near the cursor
    cursor_entry = inp.entries.get(inp.cursor_rel)
    own = {d.name for d in cursor_entry.definitions} if cursor_entry else set()
    family = language_family(inp.cursor_language)
    defined: dict[str, list[str]] = {}
    for name in sorted(inp.window - own):
        definers = inp.definers.get(name) if len(name) >= MIN_NAME else None
        if definers and len(definers) <= MAX_DEFINERS:
            for rel in definers:
                # a Lua `field` says nothing about a Python `field` near the cursor
                if language_family(inp.entries[rel].language) == family:
                    defined.setdefault(rel, []).append(name)
    for rel, names in defined.items():
        c = cand(rel)
        if c is not None:
            c.cursor += min(2.0, sum(W_DEFINES / len(inp.definers[n]) for n in names))
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            c.reasons.append(f"defines {shown} (used near the cursor)")
    for rel, similarity, chunk in inp.lexical.similar(inp.window, inp.entries, inp.cursor_rel):
        c = cand(rel)
        if c is not None:
            c.cursor += W_LEXICAL * similarity
            start = chunk * s.chunk_lines + 1
            c.reasons.append(
                f"similar to the code at the cursor (lines {start}-{start + s.chunk_lines - 1}, {similarity:.2f})"
            )
    return cands


def make_picks(
    cands: dict[str, Candidate],
    entries: dict[str, FileEntry],
    prior: dict[str, float],
    prior_order: list[str],
    cursor_rel: str,
    edited: list[str],
    opened: list[str],
) -> tuple[Callable[[], Iterator[Pick]], list[Pick]]:
    """Turns candidates into the packer's two lists, each best first.

    Returns:
        A factory of the structural picks (files with a structural score, then every other
        file in `prior_order`; built lazily because a small budget reads only the first
        few), and the cursor-driven picks (files with only cursor-driven reasons).
    """
    edit_rank = {r: len(edited) - i for i, r in enumerate(edited)}
    open_rank = {r: len(opened) - i for i, r in enumerate(opened)}

    def pick(rel: str, score: float, reasons: list[str]) -> Pick:
        if rel in edit_rank:
            return Pick(entries[rel], score, reasons, "edited", edit_rank[rel])
        if rel in open_rank:
            return Pick(entries[rel], score, reasons, "open", open_rank[rel])
        return Pick(entries[rel], score, reasons, "repository")

    ranked = [c for c in cands.values() if c.structural > 0]
    ranked.sort(key=lambda c: (-(c.structural + prior.get(c.rel, 0.0)), c.rel))
    scored = {c.rel for c in ranked}

    def structural() -> Iterator[Pick]:
        for c in ranked:
            yield pick(c.rel, c.structural + prior.get(c.rel, 0.0), c.reasons)
        for rel in prior_order:
            if rel not in scored and rel != cursor_rel:
                yield pick(rel, prior[rel], cands[rel].reasons if rel in cands else [])

    cursor_only = [c for c in cands.values() if c.structural == 0 and c.cursor > 0]
    cursor_only.sort(key=lambda c: (-c.cursor, c.rel))
    return structural, [pick(c.rel, c.cursor, c.reasons) for c in cursor_only]
