"""A workspace held in memory: the same index, repository part, evidence and prompts as
`Workspace`, built from (path, text) pairs instead of a folder on disk.

Training samples are built with it (a corpus source is one repository), so the model learns
on prompts the language server sends: the same `build_repository_part`, `gather` and
`build_prompt`, fed the same kind of index. A cursor file being written is given as its
buffer text (the hole removed); everything derived from it follows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from deepfim.context import extract
from deepfim.context.evidence import RepoView
from deepfim.context.index import WorkspaceIndex
from deepfim.context.languages import language_for
from deepfim.context.prompt_builder import BuiltPrompt, ContextLevel, CursorFile, PromptSpec, build_prompt
from deepfim.context.records import FileEntry
from deepfim.context.repository_part import RepositoryPart, build_repository_part
from deepfim.context.settings import ContextSettings
from deepfim.context.tokens import TokenStore


class MemoryRepo:
    """An indexed set of files (secret-free text: the caller filters secrets)."""

    def __init__(self, name: str, files: Iterable[tuple[str, str]], settings: ContextSettings | None = None) -> None:
        self.name = name
        self.settings = settings or ContextSettings()
        self.texts: dict[str, str] = {}
        self.index = WorkspaceIndex()
        for rel, text in files:
            entry = self._entry(rel, text)
            if entry is not None:
                self.texts[rel] = text
                self.index.put(entry)
        self.index.ensure()

    def _entry(self, rel: str, text: str) -> FileEntry | None:
        spec = language_for(rel.rsplit("/", 1)[-1])
        if spec is None:
            return None
        size = len(text.encode("utf-8", "surrogatepass"))
        return extract.extract(rel, spec.name, text, size, 0, self.settings.chunk_lines)

    @contextlib.contextmanager
    def buffer(self, rel: str, text: str) -> Iterator[FileEntry | None]:
        """Within the block the index shows `rel` as the editor holds it (`text`); the entry is
        swapped in and out incrementally (not thread-safe: one sample at a time)."""
        old_entry, old_text = self.index.entries.get(rel), self.texts.get(rel)
        entry = self._entry(rel, text)
        if entry is not None:
            self.index.put(entry)
            self.texts[rel] = text
        self.index.ensure()
        try:
            yield entry
        finally:
            if old_entry is not None:
                self.index.put(old_entry)
                self.texts[rel] = old_text
            elif entry is not None:
                self.index.remove(rel)
                del self.texts[rel]
            self.index.ensure()

    def repository_part(
        self, store: TokenStore, budget: int, order: list[str] | None = None, exclude: frozenset[str] = frozenset()
    ) -> RepositoryPart:
        """The repository part (`repository_part.py`) as the index shows the files now (inside
        `buffer`, with the buffer); `order` overrides the most-central-first fill order."""
        texts = self.texts
        return build_repository_part(
            order or self.index.prior_order, self.index.entries, store, lambda e: texts.get(e.rel), budget,
            self.settings.max_file_share, exclude,
        )  # fmt: skip

    def prompt(
        self, store: TokenStore, spec: PromptSpec, rel: str, prefix: str, suffix: str,
        repository: RepositoryPart | None = None, copy: str | None = None,
    ) -> BuiltPrompt:  # fmt: skip
        """The prompt for a cursor in `rel` whose buffer is prefix + suffix (call inside
        `buffer(rel, prefix + suffix)` so the index agrees)."""
        entry = self.index.entries.get(rel)
        part = repository if spec.level is ContextLevel.REPOSITORY else None
        cursor = CursorFile(
            rel, prefix, suffix, copy=copy, summary=entry.summary if entry is not None else "",
            in_repository=part is not None and entry is not None and part.contains(rel, entry.digest),
        )  # fmt: skip
        index = self.index
        view = RepoView(index.entries, index.definers, index.lexical, index.graph, self.texts.get)
        return build_prompt(store, spec, cursor, self.name, part, view)
