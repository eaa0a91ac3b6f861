"""Prefix-cache snapshots on disk, so a restarted language server starts warm.

One file per snapshot: the V4 state after a prompt prefix (the repository part every cursor
file shares), named by the prefix cache's content key (a hash chained over the namespace and
the tokens), in a folder per model (checkpoint config, weight files' sizes and dates,
tokenizer)::

    <cache dir>/snapshots-v1/<model key>/<content key>.safetensors      0600 in 0700 folders

Each file carries its format version, the model key, its own content key, the state's
position and a sha256 of its tensors; a file that is truncated, altered, of another format or
of another model is refused with one log line and deleted (the prefix is then prefilled
again). The folder is kept under `max_bytes`, least recently used first (a load touches the
file). Only what the engine is asked to persist is written (`CompletionRequest.persist`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from deepfim.engine.model.state import AppendBuffer, AppendView, CompressorState, LayerCache, ModelState
from deepfim.private_files import private_dir, write_private

log = logging.getLogger(__name__)

FORMAT = "deepfim-snapshot-v1"
_COMPRESSOR = ("pending_kv", "pending_gate", "prev_kv", "prev_gate")


def model_key(checkpoint: Path, tokenizer_file: Path) -> str:
    """Identity of a checkpoint and tokenizer: config and tokenizer bytes, weight files' stats."""
    h = hashlib.blake2b(digest_size=12)
    for name in ("config.json", "serving.json"):
        if (checkpoint / name).is_file():
            h.update((checkpoint / name).read_bytes())
    for path in sorted(checkpoint.glob("*.safetensors")):
        st = path.stat()
        h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(tokenizer_file.read_bytes())
    return h.hexdigest()


def _flatten(state: ModelState) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    layout: dict = {"pos": state.pos, "mtp_pos": state.mtp_pos, "layers": [], "mtp": []}

    def put(name: str, t: torch.Tensor | None) -> bool:
        if t is None:
            return False
        tensors[name] = t.detach().contiguous().clone()
        return True

    for group in ("layers", "mtp"):
        for i, cache in enumerate(getattr(state, group)):
            meta: dict = {"window": put(f"{group}.{i}.window", cache.window)}
            for part in ("comp", "index"):
                comp = getattr(cache, part)
                if comp is None:
                    continue
                cm = {f: put(f"{group}.{i}.{part}.{f}", getattr(comp, f)) for f in _COMPRESSOR}
                cm["entries"] = put(f"{group}.{i}.{part}.entries", comp.entries.tensor())
                meta[part] = cm
            layout[group].append(meta)
    layout["last_hidden"] = put("last_hidden", state.last_hidden)
    return tensors, layout


def _unflatten(tensors: dict[str, torch.Tensor], layout: dict) -> ModelState:
    state = ModelState(pos=layout["pos"], mtp_pos=layout["mtp_pos"])
    for group in ("layers", "mtp"):
        caches = []
        for i, meta in enumerate(layout[group]):
            cache = LayerCache(window=tensors[f"{group}.{i}.window"] if meta["window"] else None)
            for part in ("comp", "index"):
                cm = meta.get(part)
                if cm is None:
                    continue
                name = f"{group}.{i}.{part}"
                comp = CompressorState(**{f: tensors[f"{name}.{f}"] if cm[f] else None for f in _COMPRESSOR})
                if cm["entries"]:
                    rows = tensors[f"{name}.entries"]
                    buf = AppendBuffer(rows.clone())
                    buf.length = rows.shape[1]
                    comp.entries = AppendView(buf, rows.shape[1])
                setattr(cache, part, comp)
            caches.append(cache)
        setattr(state, group, caches)
    state.last_hidden = tensors["last_hidden"] if layout["last_hidden"] else None
    return state


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].view(torch.uint8).numpy().tobytes() if tensors[name].numel() else b"")
    return h.hexdigest()


class SnapshotStore:
    """Snapshots of one model on disk (see the module docstring)."""

    def __init__(self, root: Path, model: str, max_bytes: int = 4 << 30) -> None:
        self.directory = root / "snapshots-v1" / model
        self.model = model
        self.max_bytes = max_bytes
        self.rejected = 0

    def _path(self, key: bytes) -> Path:
        return self.directory / f"{key.hex()}.safetensors"

    def has(self, key: bytes) -> bool:
        return self._path(key).is_file()

    def save(self, key: bytes, state: ModelState) -> None:
        tensors, layout = _flatten(state)
        meta = {
            "format": FORMAT, "model": self.model, "key": key.hex(), "layout": json.dumps(layout),
            "sha256": _digest(tensors),
        }  # fmt: skip
        private_dir(self.directory)
        write_private(self._path(key), save(tensors, metadata=meta))
        self._evict()

    def load(self, key: bytes) -> ModelState | None:
        """The snapshot saved under `key`, or None (absent, or refused: see the module docstring)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}
            problem = None
            if meta.get("format") != FORMAT:
                problem = f"format {meta.get('format')!r}, not {FORMAT}"
            elif meta.get("model") != self.model or meta.get("key") != key.hex():
                problem = "written for another model or prefix"
            elif meta.get("sha256") != _digest(tensors):
                problem = "checksum mismatch"
            state = None if problem else _unflatten(tensors, json.loads(meta["layout"]))
        except (OSError, SafetensorError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            problem, state = f"unreadable ({exc})", None
        if problem is not None:
            self.rejected += 1
            log.warning("prefix snapshot %s refused: %s; it will be recomputed", path.name, problem)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recently used
        return state

    def _evict(self) -> None:
        files = sorted(self.directory.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("*.safetensors")) if self.directory.is_dir() else 0
