"""Token ids of workspace files, cached by content hash, one store per tokenizer.

Packing a 1M-token prompt must not re-tokenize a megabyte of text on every request:
ids are computed once per (content digest, form) and kept as compact ``array('I')``
(4 bytes a token instead of a Python int list's 36). The store persists to
``tokens-<tokenizer hash>.msgpack`` next to the index when the tokenizer came from a file,
so `deepfim index` pays for tokenization once and `deepfim context` reuses it. The file is
written atomically with mode 0600 (`deepfim.private_files`: ids decode back to the code),
checksummed (`sealed.py`), and every id is checked against the tokenizer's vocabulary on load:
an id the model does not know would fail every completion that packs it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path

import msgpack

from deepfim.context.cursor import BlockCache
from deepfim.context.sealed import seal, unseal
from deepfim.engine.model.prompt_format import file_header_ids, file_segment_ids
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.private_files import write_private

log = logging.getLogger(__name__)
STORE_VERSION = 2
MAGIC = b"DFTOK2"


def tokenizer_fingerprint(tok: Tokenizer) -> str | None:
    """Hash of the tokenizer's file, or None for a tokenizer built in memory."""
    try:
        data = Path(tok.source).read_bytes()
    except (OSError, ValueError):
        return None
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class TokenStore:
    """Thread-safe map (digest, form) -> token ids, plus per-path header ids.

    Args:
        tok: the tokenizer every id here belongs to.
        path: where to persist, or None to keep ids in memory only.
    """

    def __init__(self, tok: Tokenizer, path: Path | None) -> None:
        self.tok = tok
        self.path = path
        self._lock = threading.Lock()
        self._ids: dict[str, array] = {}
        self._headers: dict[str, list[int]] = {}
        # what file_segment_ids puts after a file's content, derived so the layout stays in prompt.py
        self.tail_ids: list[int] = file_segment_ids(tok, "x", [])[len(file_header_ids(tok, "x")) :]
        self.blocks = BlockCache(tok)  # the cursor file's blocks (cursor.py)
        self._dirty = False
        if path is not None:
            self._load(path)

    @staticmethod
    def key(digest: str, form: str) -> str:
        return digest if form == "whole" else f"{form}:{digest}"

    def get(self, key: str) -> array | None:
        return self._ids.get(key)

    def header(self, path: str) -> list[int]:
        """`file_header_ids` of a path, cached (packing 1M tokens touches thousands of paths)."""
        found = self._headers.get(path)
        if found is None:
            found = file_header_ids(self.tok, path)
            with self._lock:
                self._headers[path] = found
        return found

    def ensure(self, items: Iterable[tuple[str, Callable[[], str | None]]]) -> None:
        """Tokenizes, in one batch, every (key, text getter) whose key is not cached yet.

        A getter returning None (the file vanished) leaves its key uncached.
        """
        missing = [(key, get) for key, get in items if key not in self._ids]
        if not missing:
            return
        keys, texts = [], []
        for key, get in missing:
            text = get()
            if text is not None:
                keys.append(key)
                texts.append(text)
        encoded = self.tok.encode_batch(texts) if len(texts) > 1 else [self.tok.encode(t) for t in texts]
        with self._lock:
            for key, ids in zip(keys, encoded, strict=True):
                self._ids[key] = array("I", ids)
            self._dirty = True

    def _load(self, path: Path) -> None:
        try:
            with open(path, "rb") as handle:
                data = msgpack.unpackb(unseal(MAGIC, handle.read()), raw=False)
        except FileNotFoundError:
            return
        except (OSError, ValueError, msgpack.UnpackException) as exc:  # DamagedCache is a ValueError
            log.warning("token cache %s is damaged (%s); re-tokenizing", path, exc)
            return
        if not isinstance(data, dict) or data.get("version") != STORE_VERSION or not isinstance(data.get("ids"), dict):
            log.warning("token cache %s has another format; re-tokenizing", path)
            return
        dropped = 0
        for key, blob in data["ids"].items():
            ids = array("I")
            if not isinstance(key, str) or not isinstance(blob, bytes) or len(blob) % ids.itemsize:
                dropped += 1
                continue
            ids.frombytes(blob)
            if ids and max(ids) >= self.tok.vocab_size:
                dropped += 1
                continue
            self._ids[key] = ids
        if dropped:
            log.warning("token cache %s: %d entries dropped (not ids of this %d-token vocabulary); re-tokenizing them",
                        path, dropped, self.tok.vocab_size)  # fmt: skip
            self._dirty = True

    def save(self, keep: set[str] | None = None) -> None:
        """Writes the store atomically; `keep` drops ids of contents no longer in the index."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            items = {k: v.tobytes() for k, v in self._ids.items() if keep is None or k in keep}
            self._dirty = False
        payload = msgpack.packb({"version": STORE_VERSION, "ids": items}, use_bin_type=True)
        write_private(self.path, seal(MAGIC, payload))
