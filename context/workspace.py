"""`Workspace`: the language server's handle on the repository context.

It keeps the index of one workspace root current from three sources (`indexer.py`):
`scan` (incremental against the on-disk cache and the previous scan), a watchfiles thread
(`start_watching`) and the editor's open buffers (`update_buffer`; buffer text wins over
disk until the buffer is closed). It remembers which files were opened and edited, and
`pack` turns all of it into a prompt for a cursor (`ranking.py`, `packer.py`).

Threading: shared state sits behind the indexer's re-entrant lock, held only for dictionary
work; reading, parsing and tokenizing happen outside it, so a keystroke's `prompt` never waits
behind a scan. `update_buffer` is O(1): the buffer is re-parsed lazily, when a `pack` for
*another* file, `stats` or `scan` needs it (the file at the cursor is never a context file
of its own prompt).

Privacy: secret files (by name or content, `secrets.py`) never enter the index, even as
open buffers; `prompt` refuses a cursor file that is secret by name (`PrivateFileError`)
and redacts secrets in the cursor file's own text.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from deepfim import env
from deepfim.context import evidence, ignore
from deepfim.context.cache import IndexCache, workspace_cache_dir
from deepfim.context.evidence import RepoView
from deepfim.context.indexer import Indexer
from deepfim.context.prompt_builder import BuiltPrompt, ContextLevel, CursorFile, PromptSpec, build_prompt
from deepfim.context.records import FileEntry, IndexStats
from deepfim.context.repository_part import RepositoryPart, build_repository_part
from deepfim.context.secrets import secret_path_reason
from deepfim.context.settings import ContextSettings
from deepfim.context.similar_window import LINE_CACHE_FILES
from deepfim.context.tokens import TokenStore, tokenizer_fingerprint
from deepfim.context.watch import Watcher
from deepfim.engine.model.tokenizer import Tokenizer

__all__ = ["BuiltPrompt", "ContextSettings", "IndexStats", "PrivateFileError", "PromptSpec", "Workspace"]

SAVE_INTERVAL_S = 30.0


class PrivateFileError(ValueError):
    """The cursor file is a secret (``.env``, a key, a credential store): nothing is packed."""


class Workspace:
    """The index of one workspace root and the packer over it.

    Args:
        root: the workspace directory.
        cache_dir: base cache directory (default `deepfim.env.cache_dir()`); this
            workspace's files go to a versioned subdirectory of it.
        settings: indexing, ranking and packing settings.
    """

    def __init__(self, root: Path, cache_dir: Path | None = None, settings: ContextSettings | None = None) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ValueError(f"workspace root {str(root)!r} is not a directory")
        self.root = root.resolve()
        self._root_abs = Path(os.path.abspath(root))
        self.settings = settings or ContextSettings()
        self.cache = IndexCache(workspace_cache_dir(Path(cache_dir) if cache_dir else env.cache_dir(), self.root))
        self._indexer = Indexer(self.root, self.settings, self.cache, self.note_edited)
        self._lock = self._indexer.lock
        self._edited: dict[str, int] = {}
        self._opened: dict[str, int] = {}
        self._seq = 0
        self._stores: weakref.WeakKeyDictionary[Tokenizer, TokenStore] = weakref.WeakKeyDictionary()
        self._parts: dict[tuple[int, int], tuple[tuple[int, int], RepositoryPart]] = {}
        self._copies: dict[str, str] = {}  # cursor-file copies fixed by `snapshot_copy`
        self._watcher: Watcher | None = None
        self._last_save = time.monotonic()

    # -- paths -----------------------------------------------------------------------------
    def relative(self, path: Path | str) -> str | None:
        """The workspace-relative ``/`` path of `path`, or None when it lies outside the root."""
        path = Path(path)
        if not path.is_absolute():
            path = self._root_abs / path
        for base, candidate in ((self._root_abs, Path(os.path.abspath(path))), (self.root, path.resolve())):
            try:
                rel = candidate.relative_to(base).as_posix()
            except ValueError:
                continue
            return rel if rel != "." else None
        return None

    def is_private(self, path: Path | str) -> bool:
        """Whether `path` is secret by name (never indexed, never packed)."""
        rel = self.relative(path)
        return secret_path_reason(rel if rel is not None else Path(path).as_posix()) is not None

    # -- indexing --------------------------------------------------------------------------
    def scan(
        self, progress: Callable[[int, int], None] | None = None, pause: Callable[[], object] | None = None
    ) -> IndexStats:
        """Brings the index up to date with the disk; cheap when little changed. Safe to repeat.

        Args:
            progress: called as ``progress(done, total)`` while files are processed.
            pause: called before each file is read and parsed; it may block.
        """
        self._indexer.scan(progress, pause)
        return self.stats()

    def reindex(self, path: Path | str) -> bool:
        """Re-reads one file from disk (what a watch event does). True if it is indexed now."""
        rel = self.relative(path)
        return rel is not None and self._indexer.reindex(rel)

    # -- editor state ----------------------------------------------------------------------
    def update_buffer(self, path: Path, text: str | None) -> None:
        """Open-buffer text wins over the file on disk; None means the buffer was closed."""
        rel = self.relative(path)
        if rel is None:
            return
        if text is None:
            self._indexer.close_buffer(rel)
            return
        opened, changed = self._indexer.set_buffer(rel, text)
        if opened:
            self.note_opened(path)
        if changed:
            self.note_edited(path)

    def note_opened(self, path: Path | str) -> None:
        self._touch(self._opened, path)

    def note_edited(self, path: Path | str) -> None:
        self._touch(self._edited, path)

    def _touch(self, recency: dict[str, int], path: Path | str) -> None:
        rel = self.relative(path)
        if rel is not None:
            with self._lock:
                self._seq += 1
                recency[rel] = self._seq

    def _recent(self, recency: dict[str, int]) -> list[str]:
        """Most recent first, at most `max_recent` (caller holds the lock)."""
        return sorted(recency, key=lambda rel: -recency[rel])[: self.settings.max_recent]

    # -- watching --------------------------------------------------------------------------
    def start_watching(self) -> None:
        """Follows file changes on a daemon thread (watchfiles) until `stop_watching`."""
        with self._lock:
            if self._watcher is None:
                self._watcher = Watcher(self.root, self._apply_changes, self.settings.watch_debounce_ms)
            self._watcher.start()

    def wait_until_watching(self, timeout: float = 10.0) -> bool:
        """Blocks until the watcher has subscribed to file events (tests, benchmarks)."""
        with self._lock:
            watcher = self._watcher
        return watcher is not None and watcher.started.wait(timeout) and watcher.running

    @property
    def watching(self) -> bool:
        with self._lock:
            return self._watcher is not None and self._watcher.running

    def stop_watching(self) -> None:
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        self.save()

    def close(self) -> None:
        self.stop_watching()

    def _apply_changes(self, changes: set[tuple[str, Path]]) -> None:
        if any(path.name in ignore.IGNORE_FILES for _, path in changes):
            self.scan()  # ignore rules changed: what is in the index may change anywhere
            return
        for _, path in sorted(changes, key=lambda c: str(c[1])):
            self.reindex(path)
        # the cache is rewritten at most every SAVE_INTERVAL_S while watching (and on stop)
        now = time.monotonic()
        if now - self._last_save >= SAVE_INTERVAL_S:
            self._last_save = now
            self.save()

    # -- results ---------------------------------------------------------------------------
    def stats(self) -> IndexStats:
        """Files, definitions and bytes per language, skipped files per reason, ready flag."""
        with self._lock:
            self._indexer.flush(None)
            self._indexer.index.ensure()
            stats = self._indexer.index.stats()
            stats.ready = self._indexer.ready
            stats.scan_seconds, stats.reused, stats.parsed = self._indexer.last_scan
        return stats

    def entry(self, path: Path | str) -> FileEntry | None:
        rel = self.relative(path)
        with self._lock:
            self._indexer.flush(None)
            return self._indexer.index.entries.get(rel) if rel is not None else None

    def files(self) -> list[str]:
        with self._lock:
            self._indexer.flush(None)
            return sorted(self._indexer.index.entries)

    def imports_of(self, path: Path | str) -> tuple[str, ...]:
        """Workspace files that `path` imports."""
        with self._lock:
            self._indexer.flush(None)
            self._indexer.index.ensure()
            return self._indexer.index.graph.imports_of(self.relative(path) or "")

    def importers_of(self, path: Path | str) -> list[str]:
        """Workspace files that import `path`."""
        with self._lock:
            self._indexer.flush(None)
            self._indexer.index.ensure()
            return self._indexer.index.graph.importers_of(self.relative(path) or "")

    def save(self) -> None:
        """Writes the index cache and token caches that changed since they were last saved."""
        self._indexer.save()
        with self._lock:
            digests = {e.digest for e in self._indexer.index.entries.values()}
            stores = list(self._stores.values())
        keep = {TokenStore.key(d, form) for d in digests for form in ("whole", "summary")}
        for store in stores:
            try:
                store.save(keep)
            except OSError:
                pass  # a read-only cache directory costs speed, not correctness

    # -- prompts ---------------------------------------------------------------------------
    def token_store(self, tokenizer: Tokenizer) -> TokenStore:
        """The token cache for `tokenizer` (persisted when the tokenizer came from a file)."""
        with self._lock:
            store = self._stores.get(tokenizer)
            if store is None:
                fingerprint = tokenizer_fingerprint(tokenizer)
                path = self.cache.token_store_path(fingerprint) if fingerprint else None
                store = self._stores[tokenizer] = TokenStore(tokenizer, path)
            return store

    def prepare_tokens(self, tokenizer: Tokenizer, progress: Callable[[int, int], None] | None = None) -> int:
        """Tokenizes every indexed file (whole and summary) ahead of packing; returns whole-file tokens."""
        store = self.token_store(tokenizer)
        with self._lock:
            self._indexer.flush(None)
            entries = sorted(self._indexer.index.entries.values(), key=lambda e: e.rel)
            buffers = dict(self._indexer.buffers)
        text_of = self._indexer.text_of
        for i in range(0, len(entries), 64):
            batch = entries[i : i + 64]
            store.ensure([(TokenStore.key(e.digest, "whole"), lambda e=e: text_of(e, buffers)) for e in batch])
            store.ensure([(TokenStore.key(e.digest, "summary"), lambda e=e: e.summary) for e in batch if e.summary])
            if progress:
                progress(min(i + 64, len(entries)), len(entries))
        self.save()
        return sum(len(store.get(TokenStore.key(e.digest, "whole")) or ()) for e in entries)

    def read_ahead_order(self) -> list[str]:
        """The indexed files `read_ahead` prepares, those beside the files opened or edited
        lately first (the evidence of a file opened next is likeliest to come from there), at
        most as many as the similar-code search keeps."""
        with self._lock:
            rels = sorted(self._indexer.index.entries)
            near = {rel.rpartition("/")[0] for rel in self._recent(self._edited) + self._recent(self._opened)}
        rels.sort(key=lambda rel: rel.rpartition("/")[0] not in near)  # stable: by path within each
        return rels[:LINE_CACHE_FILES]

    def read_ahead(self, rels: list[str]) -> None:
        """Reads files `rels` (as the evidence reads them: `Indexer.text_of`, kept while unchanged)
        and builds their similar-code line index, so a newly opened file's first prompt finds
        both done."""
        with self._lock:
            entries = [e for e in (self._indexer.index.entries.get(rel) for rel in rels) if e is not None]
            buffers = dict(self._indexer.buffers)
        for entry in entries:
            text = self._indexer.text_of(entry, buffers)
            if text is not None:
                evidence.read_ahead(text)

    def repository_part(self, tokenizer: Tokenizer, budget: int, refresh: bool = False) -> RepositoryPart:
        """The repository part of every prompt (`repository_part.py`) for `budget` tokens.

        Built on first use and then kept, so every cursor file shares it, until `refresh=True`
        asks for one that reflects the index as it is now (and leaves out the files edited
        since): the language server refreshes in the background and switches when the new
        part is prefilled.
        """
        key = (id(tokenizer), budget)
        with self._lock:
            found = self._parts.get(key)
            if found is not None and not (refresh and found[0] != self._index_generation()):
                return found[1]
            self._indexer.flush(None)
            index = self._indexer.index
            index.ensure()
            order, entries = list(index.prior_order), dict(index.entries)
            exclude = frozenset(self._edited)
            buffers = dict(self._indexer.buffers)
            generation = self._index_generation()
        text_of = self._indexer.text_of
        part = build_repository_part(
            order, entries, self.token_store(tokenizer), lambda e: text_of(e, buffers), budget,
            self.settings.max_file_share, exclude,
        )  # fmt: skip
        with self._lock:
            self._parts[key] = (generation, part)
        return part

    def _index_generation(self) -> tuple[int, int]:
        return self._indexer.index.generation, len(self._edited)

    def snapshot_copy(self, path: Path | str, text: str | None = None) -> None:
        """Fixes the text the cursor file's copy shows (the buffer now, or `text`): typing then
        leaves the copy, and the engine's cached state after it, untouched until the next one."""
        rel = self.relative(path)
        if rel is None:
            return
        with self._lock:
            current = text if text is not None else self._indexer.buffers.get(rel)
            if current is not None:
                self._copies[rel] = current

    def prompt(
        self,
        tokenizer: Tokenizer,
        spec: PromptSpec,
        path: Path,
        prefix: str,
        suffix: str,
        repo_name: str | None = None,
        repository: RepositoryPart | None = None,
        copy_wanted: Callable[[str], bool] | None = None,
        on_head: Callable[[list[int], tuple[int, ...], bool], None] | None = None,
    ) -> BuiltPrompt:
        """The prompt for a cursor in `path` between `prefix` and `suffix` (`prompt_builder.py`;
        `copy_wanted`, `on_head` as there).

        `repository`: the part to use (the language server passes the one it has prefilled);
        by default `repository_part` for the spec's budget.

        Raises:
            PrivateFileError: `path` is a secret file.
        """
        t0 = time.perf_counter()
        rel = self.relative(path)
        shown = rel if rel is not None else Path(path).name
        if secret_path_reason(rel if rel is not None else Path(path).as_posix()) is not None:
            raise PrivateFileError(f"{shown} is a secret file; it is never sent to the model")
        self._indexer.reindex_changed()
        if repository is None and spec.level is ContextLevel.REPOSITORY:
            repository = self.repository_part(tokenizer, spec.budget.repository)
        store = self.token_store(tokenizer)
        text = prefix + suffix
        with self._lock:
            self._indexer.flush(rel)
            index = self._indexer.index
            index.ensure()
            entry = index.entries.get(rel) if rel is not None else None
            copy = self._copies.get(rel) if rel is not None else None
            buffers = {r: t for r, t in self._indexer.buffers.items() if r != rel}
            text_of = self._indexer.text_of

            def current(r: str) -> str | None:
                e = index.entries.get(r)
                return text if r == rel else (text_of(e, buffers) if e is not None else None)

            # the part shows the file (maybe as it was when the part was built: the window has the
            # live text, and the next refresh leaves an edited file out); else a copy, fixed at its
            # first use so typing does not change it (`snapshot_copy` renews it)
            in_part = repository is not None and rel is not None and repository.contains(rel)
            if not in_part and rel is not None and copy is None:
                copy = self._copies[rel] = text
            cursor = CursorFile(
                shown, prefix, suffix, copy=copy, summary=entry.summary if entry is not None else "",
                in_repository=in_part,
            )  # fmt: skip
            recent = tuple(dict.fromkeys(self._recent(self._edited) + self._recent(self._opened)))
            view = RepoView(index.entries, index.definers, index.lexical, index.graph, current, recent)
            built = build_prompt(store, spec, cursor, repo_name, repository, view, copy_wanted, on_head)
        built.elapsed_ms = (time.perf_counter() - t0) * 1000
        return built
