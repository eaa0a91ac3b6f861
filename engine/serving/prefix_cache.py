"""The V4 prefix cache: model states at 128-token boundaries, keyed by content, per namespace.

A prompt is cut into blocks of `block` tokens; block k's key is a hash of the previous key and
the block's tokens, the chain seeded by the namespace. The cache maps a key to the model state
right after that block (a `ModelState.snapshot()`: window rows and open compressor windows of
its own, append-only compressed entries shared with every other snapshot of the same text).

Resuming a prompt that differs from a cached one at position q restores the snapshot at
128 * floor(q / 128) (or a later one, see below) and recomputes at most 127 tokens plus the
change. The engine prefills in chunks that end on the same absolute boundaries whatever the
prompt (`boundaries`), so a resumed computation performs exactly the same operations as a cold
one and is bit-identical to it. Inside the last, partial block the chunks are 16 tokens, so
typing one more character recomputes at most 15 tokens, in one call.

Persistence (`save`/`load`) is versioned and checksummed: the index names the format, the
block size and the model the states belong to (`model_key`), and a digest of every tensor. A
cache of another format or model is ignored; an entry whose tensors do not match their
digests is dropped and the rest kept, with one log line naming what was wrong.

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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepfim.engine.model.state import AppendBuffer, AppendView, CompressorState, LayerCache, ModelState

log = logging.getLogger(__name__)

FORMAT_VERSION = 3


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


SUB_BLOCK = 16


def boundaries(length: int, block: int) -> list[int]:
    """Where prefill chunks end for a prompt of `length` tokens: every full block, then every
    full 16-token sub-block of the rest, then the prompt's end (128-blocks: 45 -> 16, 32, 45).

    Chunk ends depend only on positions, so two prompts that share a prefix share every
    boundary inside it: a keystroke recomputes at most 15 tokens plus the change, in one call
    (on a CPU a forward of 16 tokens costs about what one of 1 token does).
    """
    ends = list(range(block, length - length % block + 1, block))
    pos = ends[-1] if ends else 0
    sub = min(SUB_BLOCK, block)
    ends += list(range(pos + sub, length + 1, sub))
    if not ends or ends[-1] != length:
        ends.append(length)
    return ends


def _chain(namespace: str) -> bytes:
    return hashlib.blake2b(f"ns:{namespace}".encode(), digest_size=16).digest()


def block_keys(namespace: str, ids: list[int], block: int) -> list[bytes]:
    """Chained keys of the full blocks of `ids`."""
    arr = np.asarray(ids, dtype=np.int64)
    key = _chain(namespace)
    keys = []
    for start in range(0, len(arr) - len(arr) % block, block):
        key = hashlib.blake2b(key + arr[start : start + block].tobytes(), digest_size=16).digest()
        keys.append(key)
    return keys


def boundary_keys(namespace: str, ids: list[int], block: int) -> list[tuple[int, bytes]]:
    """(end, key) for every chunk boundary of `ids` (see `boundaries`)."""
    blocks = block_keys(namespace, ids, block)
    out = [((i + 1) * block, k) for i, k in enumerate(blocks)]
    base_key = blocks[-1] if blocks else _chain(namespace)
    base = len(blocks) * block
    arr = np.asarray(ids[base:], dtype=np.int64)
    for end in boundaries(len(ids), block)[len(blocks) :]:
        out.append((end, hashlib.blake2b(b"tail" + base_key + arr[: end - base].tobytes(), digest_size=16).digest()))
    return out


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
            keys = boundary_keys(namespace, ids, self.block)
            for end, key in reversed(keys):
                if end == len(ids):
                    continue  # a snapshot has no logits: at least the last chunk is recomputed
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    self.hit_tokens += end
                    return MatchResult(entry.state.snapshot(), end)
            return MatchResult(None, 0)

    def insert(self, namespace: str, ids: list[int], state: ModelState) -> None:
        """Remembers `state` as the state after `ids`, which must end on a chunk boundary."""
        keys = dict(boundary_keys(namespace, ids, self.block))
        if not ids or state.pos != len(ids) or len(ids) not in keys:
            raise ValueError(f"snapshot at {state.pos} for {len(ids)} tokens is not on a chunk boundary")
        self._put(keys[len(ids)], state.snapshot(), None)

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
    def save(self, directory: str | Path, model_key: str = "") -> None:
        """Writes every entry to `directory`; tensors shared between entries are written once.
        `model_key` identifies the weights the states were computed with (see `load`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        store = _TensorStore()
        entries = []
        with self._lock:
            for key, entry in self._entries.items():
                st = entry.state
                entries.append({
                    "key": key.hex(), "pos": st.pos, "mtp_pos": st.mtp_pos,
                    "layers": [_save_layer(c, store) for c in st.layers],
                    "mtp": [_save_layer(c, store) for c in st.mtp],
                    "logits": store.name(entry.logits), "last_hidden": store.name(st.last_hidden),
                })  # fmt: skip
        tmp = directory / "prefix_cache.safetensors.tmp"
        save_file(store.tensors, str(tmp))
        tmp.replace(directory / "prefix_cache.safetensors")
        digests = {name: _digest(t) for name, t in store.tensors.items()}
        index = {"version": FORMAT_VERSION, "block": self.block, "model": model_key, "digests": digests,
                 "entries": entries}  # fmt: skip
        tmp_index = directory / "prefix_cache.json.tmp"
        tmp_index.write_text(json.dumps(index), encoding="utf-8")
        tmp_index.replace(directory / "prefix_cache.json")

    def load(self, directory: str | Path, model_key: str = "") -> int:
        """Adds the entries saved in `directory` for the same model; returns how many.

        A cache of another format, block size or model is ignored; entries whose tensors are
        missing or do not match their digests are dropped, the others kept (one log line).
        """
        directory = Path(directory)
        index_path = directory / "prefix_cache.json"
        if not index_path.exists():
            return 0
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            found = {k: index.get(k) for k in ("version", "block", "model")} if isinstance(index, dict) else {}
            wanted = {"version": FORMAT_VERSION, "block": self.block, "model": model_key}
            if found != wanted:
                log.warning("%s: prefix cache of another format or model (%s, expected %s); ignoring it",
                            directory, found, wanted)  # fmt: skip
                return 0
            tensors = load_file(str(directory / "prefix_cache.safetensors"))
            digests, metas = dict(index["digests"]), list(index["entries"])
        except (OSError, ValueError, TypeError, KeyError, SafetensorError) as exc:
            log.warning("%s: unreadable prefix cache (%s); starting empty", directory, exc)
            return 0
        bad = {name for name, t in tensors.items() if digests.get(name) != _digest(t)}
        buffers: dict[str, AppendBuffer] = {}

        def tensor(name: str) -> torch.Tensor:
            if name in bad or name not in tensors:
                raise ValueError(f"tensor {name} {'does not match its digest' if name in bad else 'is missing'}")
            return tensors[name]

        def buffer(name: str) -> AppendBuffer:
            if name not in buffers:
                buffers[name] = AppendBuffer(tensor(name))
                buffers[name].length = tensors[name].shape[1]
            return buffers[name]

        def get(name: str | None) -> torch.Tensor | None:
            return None if name is None else tensor(name)

        loaded, problems = 0, []
        for meta in metas:
            try:
                state = ModelState(pos=meta["pos"], mtp_pos=meta["mtp_pos"], last_hidden=get(meta["last_hidden"]))
                state.layers = [_load_layer(m, get, buffer) for m in meta["layers"]]
                state.mtp = [_load_layer(m, get, buffer) for m in meta["mtp"]]
                self._put(bytes.fromhex(meta["key"]), state, get(meta["logits"]))
                loaded += 1
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                problems.append(str(exc))
        if problems:
            log.warning("%s: %d of %d prefix-cache entries dropped (%s); they will be recomputed",
                        directory, len(problems), len(metas), "; ".join(sorted(set(problems))[:3]))  # fmt: skip
        return loaded


class _TensorStore:
    """Names tensors for one safetensors file, writing each distinct tensor object once."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._names: dict[int, str] = {}
        self._buffers: dict[int, str] = {}

    def name(self, t: torch.Tensor | None) -> str | None:
        if t is None:
            return None
        if id(t) not in self._names:
            self._names[id(t)] = f"t{len(self._names)}"
            self.tensors[self._names[id(t)]] = t.contiguous().clone()
        return self._names[id(t)]

    def buffer(self, buf: AppendBuffer) -> str:
        if id(buf) not in self._buffers:
            self._buffers[id(buf)] = f"buffer{len(self._buffers)}"
            self.tensors[self._buffers[id(buf)]] = buf.data[:, : buf.length].contiguous().clone()
        return self._buffers[id(buf)]


def _digest(t: torch.Tensor) -> str:
    """blake2b of a tensor's bytes, whatever its dtype."""
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.blake2b(memoryview(raw), digest_size=16).hexdigest()


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


def _save_layer(cache: LayerCache, store: _TensorStore) -> dict:
    meta: dict = {"window": store.name(cache.window)}
    for name in ("comp", "index"):
        comp: CompressorState | None = getattr(cache, name)
        if comp is None:
            continue
        cm = {f: store.name(getattr(comp, f)) for f in _COMPRESSOR_FIELDS}
        if comp.entries.buf is not None:
            cm["buffer"], cm["count"] = store.buffer(comp.entries.buf), comp.entries.count
        meta[name] = cm
    return meta


def _load_layer(meta: dict, get, buffer) -> LayerCache:
    cache = LayerCache(window=get(meta["window"]))
    for name in ("comp", "index"):
        cm = meta.get(name)
        if cm is None:
            continue
        comp = CompressorState(**{f: get(cm[f]) for f in _COMPRESSOR_FIELDS})
        if "buffer" in cm:
            comp.entries = AppendView(buffer(cm["buffer"]), cm["count"])
        setattr(cache, name, comp)
    return cache


_COMPRESSOR_FIELDS = ("pending_kv", "pending_gate", "prev_kv", "prev_gate")
