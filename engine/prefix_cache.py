"""The V4 prefix cache: model states at 128-token boundaries, keyed by content, per namespace.

A prompt is cut into blocks of `block` tokens; block k's key is a hash of the previous key and
the block's tokens, the chain seeded by the namespace. The cache maps a key to the model state
right after that block (a `ModelState.snapshot()`: window rows and open compressor windows of
its own, append-only compressed entries shared with every other snapshot of the same text).

Resuming a prompt that differs from a cached one at position q restores the snapshot at
128 * floor(q / 128) and recomputes at most 127 tokens plus the change. The engine prefills in
chunks that end on the same absolute 128-token boundaries, so a resumed computation performs
exactly the same operations as a cold one and is bit-identical to it.

Namespaces keep users apart: the same text under two namespaces gets unrelated keys, so state
computed from one user's prompt is never served to another (the LAN server sets the namespace
from the authenticated user). `exact` entries additionally remember the final state and logits
of recent whole prompts, so re-asking the same prompt (another candidate, the other mode,
typing through) costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from deepfim.engine.cache import AppendBuffer, AppendView, CompressorState, LayerCache, ModelState

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class MatchResult:
    state: ModelState | None  # a private copy to continue from (None: start from scratch)
    length: int  # prompt tokens covered by `state`
    logits: torch.Tensor | None = None  # next-token logits when the whole prompt matched


@dataclass
class _Entry:
    state: ModelState
    private_bytes: int
    buffers: list[AppendBuffer]
    logits: torch.Tensor | None = None


def block_keys(namespace: str, ids: list[int], block: int) -> list[bytes]:
    """Chained keys of the full blocks of `ids`."""
    arr = np.asarray(ids, dtype=np.int64)
    key = hashlib.blake2b(f"ns:{namespace}".encode(), digest_size=16).digest()
    keys = []
    for start in range(0, len(arr) - len(arr) % block, block):
        key = hashlib.blake2b(key + arr[start : start + block].tobytes(), digest_size=16).digest()
        keys.append(key)
    return keys


def exact_key(namespace: str, ids: list[int]) -> bytes:
    return hashlib.blake2b(
        f"exact:{namespace}".encode() + np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16
    ).digest()


class PrefixCache:
    """Thread-safe LRU of model-state snapshots within a memory budget."""

    def __init__(self, block: int = 128, budget_bytes: int = 1 << 30) -> None:
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.block = block
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._buffer_refs: dict[int, list] = {}  # id(buffer) -> [buffer, refcount]
        self._private_bytes = 0
        self._lock = threading.Lock()
        self.lookups = self.hits = self.hit_tokens = self.lookup_tokens = self.evictions = 0

    # lookup / insert ---------------------------------------------------------------------------
    def match(self, namespace: str, ids: list[int]) -> MatchResult:
        with self._lock:
            self.lookups += 1
            self.lookup_tokens += len(ids)
            exact = self._entries.get(exact_key(namespace, ids))
            if exact is not None:
                self._entries.move_to_end(exact_key(namespace, ids))
                self.hits += 1
                self.hit_tokens += len(ids)
                return MatchResult(exact.state.snapshot(), len(ids), exact.logits)
            best: tuple[bytes, int] | None = None
            for i, key in enumerate(block_keys(namespace, ids, self.block)):
                if key not in self._entries:
                    break
                best = (key, (i + 1) * self.block)
            if best is None:
                return MatchResult(None, 0)
            key, length = best
            if length == len(ids):
                # the snapshot has no logits; keep the last block to recompute them
                return self._back_off(namespace, ids, length)
            self._entries.move_to_end(key)
            self.hits += 1
            self.hit_tokens += length
            return MatchResult(self._entries[key].state.snapshot(), length)

    def _back_off(self, namespace: str, ids: list[int], length: int) -> MatchResult:
        length -= self.block
        if length <= 0:
            return MatchResult(None, 0)
        key = block_keys(namespace, ids[:length], self.block)[-1]
        self._entries.move_to_end(key)
        self.hits += 1
        self.hit_tokens += length
        return MatchResult(self._entries[key].state.snapshot(), length)

    def insert(self, namespace: str, ids: list[int], state: ModelState) -> None:
        """Remembers `state` as the state after `ids` (len(ids) must be a multiple of `block`)."""
        if len(ids) % self.block or not ids or state.pos != len(ids):
            raise ValueError(f"snapshot at {state.pos} for {len(ids)} tokens is not on a {self.block} boundary")
        self._put(block_keys(namespace, ids, self.block)[-1], state.snapshot(), None)

    def insert_exact(self, namespace: str, ids: list[int], state: ModelState, logits: torch.Tensor) -> None:
        self._put(exact_key(namespace, ids), state.snapshot(), logits.detach().clone())

    def _put(self, key: bytes, state: ModelState, logits: torch.Tensor | None) -> None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return
            buffers, private = _state_storage(state)
            entry = _Entry(state, private + (0 if logits is None else logits.numel() * 4), buffers, logits)
            self._entries[key] = entry
            self._private_bytes += entry.private_bytes
            for b in buffers:
                ref = self._buffer_refs.setdefault(id(b), [b, 0])
                ref[1] += 1
            self._evict()

    def _evict(self) -> None:
        while self._entries and self.nbytes() > self.budget_bytes:
            _, entry = self._entries.popitem(last=False)
            self.evictions += 1
            self._private_bytes -= entry.private_bytes
            for b in entry.buffers:
                ref = self._buffer_refs[id(b)]
                ref[1] -= 1
                if ref[1] == 0:
                    del self._buffer_refs[id(b)]

    # accounting --------------------------------------------------------------------------------
    def nbytes(self) -> int:
        shared = sum(ref[0].data.numel() * ref[0].data.element_size() for ref in self._buffer_refs.values())
        return self._private_bytes + shared

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._buffer_refs.clear()
            self._private_bytes = 0

    def stats(self) -> dict:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self.nbytes(),
                "budget_bytes": self.budget_bytes,
                "lookups": self.lookups,
                "hits": self.hits,
                "hit_rate": self.hits / self.lookups if self.lookups else 0.0,
                "token_hit_rate": self.hit_tokens / self.lookup_tokens if self.lookup_tokens else 0.0,
                "evictions": self.evictions,
            }

    # persistence -------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Writes every entry (and the shared buffers once) to `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        buffer_ids: dict[int, tuple[int, AppendBuffer]] = {}
        entries = []
        with self._lock:
            for key, entry in self._entries.items():
                meta = {"key": key.hex(), "pos": entry.state.pos, "layers": [], "mtp": []}
                for group, caches in (("layers", entry.state.layers), ("mtp", entry.state.mtp)):
                    for li, cache in enumerate(caches):
                        meta[group].append(_save_layer(cache, f"{len(entries)}.{group}{li}", tensors, buffer_ids))
                if entry.logits is not None:
                    tensors[f"{len(entries)}.logits"] = entry.logits
                if entry.state.last_hidden is not None:
                    tensors[f"{len(entries)}.last_hidden"] = entry.state.last_hidden
                meta["mtp_pos"] = entry.state.mtp_pos
                entries.append(meta)
            for index, buf in buffer_ids.values():
                tensors[f"buffer{index}"] = buf.data[:, : buf.length].contiguous()
        tmp = directory / "prefix_cache.safetensors.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(directory / "prefix_cache.safetensors")
        index = {"version": FORMAT_VERSION, "block": self.block, "entries": entries}
        (directory / "prefix_cache.json").write_text(json.dumps(index), encoding="utf-8")

    def load(self, directory: str | Path) -> int:
        """Adds the entries saved in `directory`; returns how many (0 if none or incompatible)."""
        directory = Path(directory)
        index_path = directory / "prefix_cache.json"
        if not index_path.exists():
            return 0
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            if index.get("version") != FORMAT_VERSION or index.get("block") != self.block:
                log.warning("%s: prefix cache of another format; ignoring it", directory)
                return 0
            tensors = load_file(str(directory / "prefix_cache.safetensors"))
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable prefix cache (%s); starting empty", directory, exc)
            return 0
        buffers: dict[int, AppendBuffer] = {}

        def buffer(i: int) -> AppendBuffer:
            if i not in buffers:
                data = tensors[f"buffer{i}"]
                buffers[i] = AppendBuffer(data)
                buffers[i].length = data.shape[1]
            return buffers[i]

        for n, meta in enumerate(index["entries"]):
            state = ModelState(pos=meta["pos"], mtp_pos=meta.get("mtp_pos", 0),
                               last_hidden=tensors.get(f"{n}.last_hidden"))  # fmt: skip
            state.layers = [_load_layer(m, tensors, buffer) for m in meta["layers"]]
            state.mtp = [_load_layer(m, tensors, buffer) for m in meta["mtp"]]
            self._put(bytes.fromhex(meta["key"]), state, tensors.get(f"{n}.logits"))
        return len(index["entries"])


def _state_storage(state: ModelState) -> tuple[list[AppendBuffer], int]:
    """(shared append buffers referenced, bytes of tensors private to this snapshot)."""
    buffers, private = [], 0
    for cache in [*state.layers, *state.mtp]:
        private += _nbytes(cache.window)
        for comp in (cache.comp, cache.index):
            if comp is None:
                continue
            for t in (comp.pending_kv, comp.pending_gate, comp.prev_kv, comp.prev_gate):
                private += _nbytes(t)
            if comp.entries.buf is not None:
                buffers.append(comp.entries.buf)
    if state.last_hidden is not None:
        private += _nbytes(state.last_hidden)
    return buffers, private


def _nbytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _save_layer(cache: LayerCache, prefix: str, tensors: dict, buffer_ids: dict) -> dict:
    meta: dict = {}
    if cache.window is not None:
        tensors[f"{prefix}.window"] = cache.window
        meta["window"] = True
    for name in ("comp", "index"):
        comp: CompressorState | None = getattr(cache, name)
        if comp is None:
            continue
        cm: dict = {}
        for field_name in ("pending_kv", "pending_gate", "prev_kv", "prev_gate"):
            t = getattr(comp, field_name)
            if t is not None:
                tensors[f"{prefix}.{name}.{field_name}"] = t
                cm[field_name] = True
        if comp.entries.buf is not None:
            cm["buffer"] = buffer_ids.setdefault(id(comp.entries.buf), (len(buffer_ids), comp.entries.buf))[0]
            cm["count"] = comp.entries.count
        meta[name] = cm
    meta["prefix"] = prefix
    return meta


def _load_layer(meta: dict, tensors: dict, buffer) -> LayerCache:
    prefix = meta["prefix"]
    cache = LayerCache(window=tensors.get(f"{prefix}.window"))
    for name in ("comp", "index"):
        cm = meta.get(name)
        if cm is None:
            continue
        comp = CompressorState(**{f: tensors.get(f"{prefix}.{name}.{f}") for f in
                                  ("pending_kv", "pending_gate", "prev_kv", "prev_gate")})  # fmt: skip
        if "buffer" in cm:
            comp.entries = AppendView(buffer(cm["buffer"]), cm["count"])
        setattr(cache, name, comp)
    return cache
