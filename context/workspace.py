"""`Workspace`: the language server's handle on the repository context.

It keeps the index of one workspace root current from three sources (`indexer.py`):
`scan` (incremental against the on-disk cache and the previous scan), a watchfiles thread
(`start_watching`) and the editor's open buffers (`update_buffer`; buffer text wins over
disk until the buffer is closed). It remembers which files were opened and edited, and
`pack` turns all of it into a prompt for a cursor (`ranking.py`, `packer.py`).

Threading: shared state sits behind the indexer's re-entrant lock, held only for dictionary
work; reading, parsing and tokenizing happen outside it, so a keystroke's `pack` never waits
behind a scan. `update_buffer` is O(1): the buffer is re-parsed lazily, when a `pack` for
*another* file, `stats` or `scan` needs it (the file at the cursor is never a context file
of its own prompt).

Privacy: secret files (by name or content, `secrets.py`) never enter the index, even as
open buffers; `pack` refuses a cursor file that is secret by name (`PrivateFileError`)
and redacts secrets in the cursor file's own text.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from deepfim import env
from deepfim.context import ignore, lexical, ranking
from deepfim.context.cache import IndexCache, workspace_cache_dir
from deepfim.context.indexer import Indexer
from deepfim.context.languages import language_for
from deepfim.context.packer import PackRequest, PackResult, pack
from deepfim.context.records import FileEntry, IndexStats
from deepfim.context.secrets import secret_path_reason
from deepfim.context.settings import ContextSettings
from deepfim.context.tokens import TokenStore, tokenizer_fingerprint
from deepfim.context.watch import Watcher
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.model.tokenizer import Tokenizer

__all__ = ["ContextSettings", "IndexStats", "PackResult", "PrivateFileError", "Workspace"]

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
    def scan(self, progress: Callable[[int, int], None] | None = None) -> IndexStats:
        """Brings the index up to date with the disk; cheap when little changed. Safe to repeat.

        Args:
            progress: called as ``progress(done, total)`` while files are processed.
        """
        self._indexer.scan(progress)
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

    # -- packing ---------------------------------------------------------------------------
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

    def pack(
        self,
        tokenizer: Tokenizer,
        path: Path,
        prefix: str,
        suffix: str,
        budget: int,
        order: FimOrder = FimOrder.PSM,
        repo_name: str | None = None,
    ) -> PackResult:
        """The prompt for a cursor in `path` between `prefix` and `suffix`, within `budget` tokens.

        Raises:
            PrivateFileError: `path` is a secret file.
            BudgetError: `budget` cannot hold the prompt's fixed parts.
            ValueError: a bad `budget` or `order`.
        """
        t0 = time.perf_counter()
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise ValueError(f"budget must be a positive number of tokens, got {budget!r}")
        order = FimOrder(order)
        rel = self.relative(path)
        shown = rel if rel is not None else Path(path).name
        if secret_path_reason(rel if rel is not None else Path(path).as_posix()) is not None:
            raise PrivateFileError(f"{shown} is a secret file; it is never sent to the model")
        store = self.token_store(tokenizer)
        self._indexer.reindex_changed()
        s = self.settings
        window = "\n".join(prefix[-20_000:].split("\n")[-s.window_lines :])
        window += "\n".join(suffix[:5_000].split("\n")[: max(1, s.window_lines // 4)])
        with self._lock:
            self._indexer.flush(rel)
            index = self._indexer.index
            index.ensure()
            cursor_entry = index.entries.get(rel) if rel is not None else None
            edited, opened = self._recent(self._edited), self._recent(self._opened)
            cands = ranking.rank(
                ranking.RankInput(
                    cursor_rel=rel or "", cursor_imports=index.graph.imports_of(rel) if cursor_entry else (),
                    window=lexical.identifiers(window), entries=index.entries, graph=index.graph,
                    definers=index.definers, lexical=index.lexical, edited=edited, opened=opened, settings=s,
                    cursor_language=getattr(language_for(Path(path).name), "name", ""),
                )
            )  # fmt: skip
            structural, cursor_driven = ranking.make_picks(
                cands, dict(index.entries), index.prior, index.prior_order, rel or "", edited, opened
            )
            buffers = {r: text for r, text in self._indexer.buffers.items() if r != rel}
        text_of = self._indexer.text_of
        request = PackRequest(
            cursor_path=shown, prefix=prefix, suffix=suffix, budget=budget, order=order, repo_name=repo_name,
            structural=structural, cursor_driven=cursor_driven, text_of=lambda e: text_of(e, buffers), settings=s,
        )  # fmt: skip
        result = pack(request, store)
        result.elapsed_ms = (time.perf_counter() - t0) * 1000
        return result
