"""`Indexer`: keeps the in-memory index of one root current with the disk and open buffers.

Sources of truth, in order of precedence: an open editor buffer, then the file on disk.
`scan` is incremental (against the on-disk cache on the first call, against the previous
scan after that); `reindex` handles one path (a watch event); `set_buffer` only records the
text, and `flush` re-parses changed buffers when someone needs them.

Threading: one re-entrant lock guards all shared state and is held only for dictionary work;
reading and parsing happen outside it. Scans are serialised by a second lock.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

from deepfim.context import discovery, extract
from deepfim.context.cache import IndexCache
from deepfim.context.disk_texts import DiskTexts, signature
from deepfim.context.index import WorkspaceIndex
from deepfim.context.languages import language_for
from deepfim.context.records import FileEntry, SkipRecord
from deepfim.context.secrets import redact, secret_path_reason
from deepfim.context.settings import ContextSettings
from deepfim.context.trees import TreeCache

log = logging.getLogger(__name__)


class Indexer:
    """The index of `root` plus buffers; `on_edit(rel)` hears of content changes after the first scan."""

    def __init__(
        self, root: Path, settings: ContextSettings, cache: IndexCache, on_edit: Callable[[str], None]
    ) -> None:
        self.root = root
        self.settings = settings
        self.cache = cache
        self.lock = threading.RLock()
        self.index = WorkspaceIndex()
        self.buffers: dict[str, str] = {}
        self._redacted: dict[str, tuple[str, str]] = {}  # rel -> (buffer text, that text redacted)
        self._disk_texts = DiskTexts()  # files' redacted texts while their stat is unchanged
        self.ready = False
        self.last_scan = (0.0, 0, 0)  # seconds, reused, read
        self._on_edit = on_edit
        self._scan_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._loaded = False
        self._dirty = False
        self._pending: set[str] = set()  # buffers whose entry is out of date
        self._pending_disk: set[str] = set()  # files found changed on disk while packing
        self._trees = TreeCache()  # files edited lately: their next parse is incremental

    # -- disk ------------------------------------------------------------------------------
    def scan(
        self, progress: Callable[[int, int], None] | None = None, pause: Callable[[], object] | None = None
    ) -> None:
        """Brings the index up to date with the disk. `pause()` is called before each file read
        and parsed; it may block (the language server's `ScanPacing`: no scan beside a completion)."""
        with self._scan_lock:
            t0 = time.perf_counter()
            s = self.settings
            with self.lock:
                first = not self._loaded
                if first:
                    entries, skipped, lexical = self.cache.load(s.index_fingerprint())
                    restored = self.index.load(entries, skipped, lexical)
                    self._dirty = bool(entries) and not restored  # save the rebuilt postings
                    self._loaded = True
            found = discovery.discover(self.root, s.max_file_bytes, s.extra_ignore)
            seen = {c.rel for c in found.candidates} | set(found.skipped)
            todo: list[discovery.Candidate] = []
            reused = 0
            with self.lock:
                index = self.index
                for rel, record in found.skipped.items():
                    if index.skip(rel, record):
                        self._dirty = True
                for c in found.candidates:
                    if c.rel in self.buffers:
                        continue
                    entry, skip = index.entries.get(c.rel), index.skipped.get(c.rel)
                    stat = (c.size, c.mtime_ns)
                    if (entry is not None and (entry.size, entry.mtime_ns) == stat) or (
                        skip is not None and (skip.size, skip.mtime_ns) == stat
                    ):
                        reused += 1
                    else:
                        todo.append(c)
                for rel in [r for r in [*index.entries, *index.skipped] if r not in seen and r not in self.buffers]:
                    index.forget(rel)
                    self._dirty = True
            total = reused + len(todo)
            if progress:
                progress(reused, total)
            for i, c in enumerate(todo, 1):
                if pause is not None:
                    pause()
                self._index_candidate(c, mark_edited=not first)
                if progress and (i % 16 == 0 or i == len(todo)):
                    progress(reused + i, total)
            with self.lock:
                self.flush(None)
                self.index.ensure()
                self.ready = True
                self.last_scan = (time.perf_counter() - t0, reused, len(todo))
                skipped = len(self.index.skipped)
            log.debug("scanned %s: %d files reused, %d read, %d skipped", self.root, reused, len(todo), skipped)
            self.save()

    def _index_candidate(self, c: discovery.Candidate, mark_edited: bool) -> None:
        """Reads, checks and parses one file outside the lock, then stores the result."""
        with self.lock:
            old = self.index.entries.get(c.rel)
        stat = signature(c.path)  # before the read, as `text_of` takes it
        text, reason = discovery.read_text(c.path, self.settings.max_file_bytes)
        entry = None
        if text is not None:
            digest = extract.digest(text)
            if old is not None and not old.from_buffer and old.digest == digest:
                entry = dataclasses.replace(old, size=c.size, mtime_ns=c.mtime_ns)
            else:
                try:
                    entry = extract.extract(
                        c.rel, c.language, text, c.size, c.mtime_ns, self.settings.chunk_lines,
                        text_digest=digest, trees=self._trees if old is not None else None,
                    )  # fmt: skip
                except Exception:  # a grammar crash on one odd file must not fail the scan
                    log.exception("parsing %s failed", c.rel)
                    reason = "unparsable"
        with self.lock:
            if c.rel in self.buffers:
                return  # a buffer opened meanwhile wins
            self._dirty = True
            if entry is not None:
                self.index.put(entry)
                self._disk_texts.put(c.rel, stat, entry.digest, text)  # the evidence reads it next
                if mark_edited and old is not None and old.digest != entry.digest:
                    self._on_edit(c.rel)
            elif reason == "vanished":
                self.index.forget(c.rel)
            else:
                self.index.skip(c.rel, SkipRecord(c.size, c.mtime_ns, reason or "unreadable"))

    def reindex(self, rel: str) -> bool:
        """Re-reads one workspace path from disk. True if it is indexed afterwards."""
        s = self.settings
        found = discovery.check_path(self.root, rel, s.max_file_bytes, s.extra_ignore)
        with self.lock:
            if rel in self.buffers:
                return rel in self.index.entries
            if not isinstance(found, discovery.Candidate):
                changed = self.index.forget(rel) if found is None else self.index.skip(rel, found)
                self._dirty = self._dirty or changed
                return False
        self._index_candidate(found, mark_edited=True)
        with self.lock:
            return rel in self.index.entries

    def text_of(self, entry: FileEntry, buffers: dict[str, str]) -> str | None:
        """The indexed text of `entry` (from `buffers` for buffer entries), None if it changed.

        Secrets are redacted, in buffers as in files on disk (`discovery.read_text`).
        """
        if entry.from_buffer:
            text = buffers.get(entry.rel)
            return None if text is None else self.redacted_buffer(entry.rel, text)
        path = self.root / entry.rel
        stat = signature(path)  # before the read: a write after it changes the stat
        known = self._disk_texts.get(entry.rel, stat, entry.digest)
        if known is not None:
            return known
        text, _ = discovery.read_text(path, self.settings.max_file_bytes)
        if text is None or extract.digest(text) != entry.digest:
            with self.lock:  # changed on disk since indexed: left out now, re-indexed next time
                self._pending_disk.add(entry.rel)
            return None
        self._disk_texts.put(entry.rel, stat, entry.digest, text)
        return text

    def reindex_changed(self) -> None:
        """Re-indexes files that `text_of` found changed on disk."""
        with self.lock:
            stale, self._pending_disk = self._pending_disk, set()
        for rel in sorted(stale):
            self.reindex(rel)

    # -- buffers ---------------------------------------------------------------------------
    def redacted_buffer(self, rel: str, text: str) -> str:
        """`text` of buffer `rel` with its secrets redacted, remembered while the text is unchanged."""
        with self.lock:
            known = self._redacted.get(rel)
        if known is not None and known[0] is text:
            return known[1]
        redacted = redact(text)
        with self.lock:
            if self.buffers.get(rel) is text:
                self._redacted[rel] = (text, redacted)
        return redacted

    def set_buffer(self, rel: str, text: str) -> tuple[bool, bool]:
        """Records buffer text; returns (newly opened, content differs from before)."""
        with self.lock:
            previous = self.buffers.get(rel)
            if previous == text:
                return False, False
            self.buffers[rel] = text
            self._pending.add(rel)
            if previous is not None:
                return False, True
            entry = self.index.entries.get(rel)
        # the indexed file was redacted before hashing: compare like with like
        return True, entry is not None and entry.digest != extract.digest(self.redacted_buffer(rel, text))

    def close_buffer(self, rel: str) -> None:
        with self.lock:
            had = self.buffers.pop(rel, None) is not None
            self._redacted.pop(rel, None)
            self._pending.discard(rel)
        if had:
            self.reindex(rel)

    def flush(self, keep: str | None) -> None:
        """Re-parses changed buffers (caller holds the lock), except `keep` if it is indexed."""
        for rel in sorted(self._pending):
            if rel == keep and rel in self.index.entries:
                continue
            self._pending.discard(rel)
            language = language_for(rel.rsplit("/", 1)[-1])
            if secret_path_reason(rel) is not None:
                self.index.skip(rel, SkipRecord(0, 0, "secret-name"))
            elif language is None:
                continue
            else:
                text = self.redacted_buffer(rel, self.buffers[rel])
                size = len(text.encode("utf-8", "surrogatepass"))
                chunk_lines = self.settings.chunk_lines
                entry = extract.extract(rel, language.name, text, size, 0, chunk_lines, True, trees=self._trees)
                self.index.put(entry)

    # -- persistence -----------------------------------------------------------------------
    def save(self) -> None:
        """Writes the index cache if it changed since the last save."""
        with self._save_lock:
            with self.lock:
                if not self._dirty:
                    return
                # buffers are not what is on disk: the cache keeps the disk entries only
                buffered = [rel for rel, e in self.index.entries.items() if e.from_buffer]
                if buffered:
                    entries, lexical = {r: e for r, e in self.index.entries.items() if not e.from_buffer}, None
                else:
                    entries = dict(self.index.entries)
                    lexical = msgpack.packb(self.index.lexical.payload(), use_bin_type=True)
                skipped = dict(self.index.skipped)
                self._dirty = False
            try:
                self.cache.save(self.settings.index_fingerprint(), entries, skipped, lexical)
            except OSError as exc:
                log.warning("could not write the index cache in %s: %s", self.cache.directory, exc)
