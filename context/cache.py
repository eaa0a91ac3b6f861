"""The on-disk index cache: one msgpack file per workspace in a versioned directory.

Layout::

    <cache_dir>/context-v<CACHE_VERSION>/<root name>-<hash of root path>/
        index.msgpack                  entries + skip records, keyed by relative path
        tokens-<tokenizer hash>.msgpack  token ids by content digest (tokens.py)

An entry is reused when its file's size and mtime are unchanged; when only the mtime moved,
the content digest decides (a ``touch`` or a checkout of identical content costs a read, not
a parse). Bumping `CACHE_VERSION` (any change to what extraction produces) orphans old
directories instead of misreading them; a settings change that affects extraction (see
`ContextSettings.index_fingerprint`) or a change of the secret rules
(`secrets.detector_fingerprint`) discards the file's contents. Writes go to a temporary file
and are renamed into place, so a crash never leaves a torn cache; the file is checksummed
(`sealed.py`) and its rows type-checked, so a damaged one is rebuilt. The directories are 0700
and the files 0600 (`deepfim.private_files`): they hold the workspace's code. Older version
directories are deleted on the first save, as they may hold what this version redacts.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path

import msgpack

from deepfim.context.records import FileEntry, SkipRecord
from deepfim.context.sealed import seal, unseal
from deepfim.context.secrets import detector_fingerprint
from deepfim.private_files import write_private

log = logging.getLogger(__name__)
# 2: secrets are redacted in indexed text (v1 entries and token ids may hold them in clear);
#    files are sealed with MAGIC and a checksum
CACHE_VERSION = 2
MAGIC = b"DFIDX2"
_pruned: set[Path] = set()
_DETECTOR = detector_fingerprint()


def workspace_cache_dir(cache_root: Path, root: Path) -> Path:
    """The cache directory of one workspace (distinct roots never share one)."""
    tag = hashlib.blake2b(str(root).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.name)[:40] or "root"
    return cache_root / f"context-v{CACHE_VERSION}" / f"{name}-{tag}"


class IndexCache:
    """Reads and writes ``index.msgpack`` of one workspace."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "index.msgpack"

    def load(self, fingerprint: str) -> tuple[dict[str, FileEntry], dict[str, SkipRecord], dict | None]:
        """Entries, skip records and lexical postings saved under the same settings, else empty."""
        empty: tuple[dict, dict, None] = ({}, {}, None)
        try:
            data = msgpack.unpackb(unseal(MAGIC, self.path.read_bytes()), raw=False, strict_map_key=False)
        except FileNotFoundError:
            return empty
        except (OSError, ValueError, msgpack.UnpackException) as exc:  # DamagedCache is a ValueError
            log.warning("index cache %s is damaged (%s); rebuilding it", self.path, exc)
            return empty
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("settings") != fingerprint:
            return empty
        if data.get("detector") != _DETECTOR:
            log.info("the secret rules changed since %s was written: re-reading every file", self.path)
            return empty
        try:
            entries = {rel: FileEntry.from_row(rel, row) for rel, row in data["files"].items()}
            skipped = {rel: SkipRecord.from_row(row) for rel, row in data["skipped"].items()}
            lexical = msgpack.unpackb(data["lexical"], raw=False) if data.get("lexical") else None
        except (KeyError, TypeError, ValueError, AttributeError, msgpack.UnpackException) as exc:
            log.warning("index cache %s is malformed (%s); rebuilding it", self.path, exc)
            return empty
        return entries, skipped, lexical

    def save(
        self,
        fingerprint: str,
        entries: dict[str, FileEntry],
        skipped: dict[str, SkipRecord],
        lexical: bytes | None = None,
    ) -> None:
        """Writes the cache; `lexical` is the packed `LexicalIndex.payload()` of exactly `entries`."""
        payload = {
            "version": CACHE_VERSION,
            "settings": fingerprint,
            "detector": _DETECTOR,  # entries hold text redacted by these rules
            "files": {rel: e.to_row() for rel, e in entries.items()},
            "skipped": {rel: [s.size, s.mtime_ns, s.reason] for rel, s in skipped.items()},
            "lexical": lexical,
        }
        write_private(self.path, seal(MAGIC, msgpack.packb(payload, use_bin_type=True)))
        _prune_older_versions(self.directory.parent.parent)

    def token_store_path(self, fingerprint: str) -> Path:
        return self.directory / f"tokens-{fingerprint}.msgpack"


def _prune_older_versions(cache_root: Path) -> None:
    """Deletes ``context-v<N>`` directories of older versions under `cache_root`, once a process."""
    if cache_root in _pruned:
        return
    _pruned.add(cache_root)
    for old in cache_root.glob("context-v*"):
        found = re.fullmatch(r"context-v(\d+)", old.name)
        if found and int(found.group(1)) < CACHE_VERSION and old.is_dir():
            log.info("deleting the index cache of an older version: %s", old)
            shutil.rmtree(old, ignore_errors=True)
