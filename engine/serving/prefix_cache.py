"""The V4 prefix cache: model states at 128-token boundaries, keyed by content, per namespace.

A prompt is cut into blocks of `block` tokens; block k's key is a hash of the previous key and
the block's tokens, the chain seeded by the namespace. The cache maps a key to the model state
right after that block (a `ModelState.kept()` snapshot: window rows and open compressor windows of
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
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from deepfim.engine.model.state import AppendBuffer, ModelState
from deepfim.engine.serving.snapshot_store import SnapshotStore

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


def boundaries(length: int, block: int, anchors: tuple[int, ...] = (), sub_blocks: bool = True) -> list[int]:
    """Where prefill chunks end for a prompt of `length` tokens: every full block, then every
    full 16-token sub-block of the rest, then the prompt's end (128-blocks: 45 -> 16, 32, 45);
    plus the request's `anchors` (the end of the part every cursor file shares, the end of
    the cursor file's copy), where a snapshot lets a later prompt resume exactly. A prompt
    that ends at an anchor (the shared part prefilled alone) gets no sub-blocks, so it is
    chunked exactly as the longer prompts that pass through that anchor.

    Chunk ends depend only on positions and anchors, so two prompts that share a prefix (and
    its anchors) share every boundary inside it: a keystroke recomputes at most 15 tokens plus
    the change, in one call (on a CPU a forward of 16 tokens costs about what one of 1 does).
    `sub_blocks=False` leaves the sub-blocks out: where no decode step serves short calls, each
    costs what a whole block does (see `ModelRunner._next_end`).
    """
    ends = list(range(block, length - length % block + 1, block))
    inside = [a for a in anchors if 0 < a < length]
    pos = max([ends[-1] if ends else 0, *inside])  # sub-blocks only after the last block end or anchor
    if sub_blocks and length not in anchors:  # an anchored end (a prefill of the shared part) is never typed on
        sub = min(SUB_BLOCK, block)
        ends += list(range(pos + sub, length + 1, sub))
    if not ends or ends[-1] != length:
        ends.append(length)
    if inside:
        ends = sorted(set(ends).union(inside))
    return ends


def _chain(namespace: str) -> bytes:
    return hashlib.blake2b(f"ns:{namespace}".encode(), digest_size=16).digest()


class PromptKeys:
    """The cache keys of one prompt, hashed once: a request's every chunk is inserted under its
    key, and rehashing the whole prompt at each (2 ms at 16K tokens, 128 times in a cold
    prefill) cost more than the snapshots themselves.

    A full block's key chains the previous block's key and the block's tokens (seeded by the
    namespace); a boundary inside a block is keyed by that block's chained key and the tokens
    after it, so the key of a position depends only on the tokens before it."""

    def __init__(self, namespace: str, ids: list[int], block: int, anchors: tuple[int, ...] = ()) -> None:
        self.namespace, self.length, self.block, self.anchors = namespace, len(ids), block, anchors
        self._arr = np.asarray(ids, dtype=np.int64)
        key, self._blocks = _chain(namespace), []
        for start in range(0, self.length - self.length % block, block):
            key = hashlib.blake2b(key + self._arr[start : start + block].tobytes(), digest_size=16).digest()
            self._blocks.append(key)
        self.exact = hashlib.blake2b(f"exact:{namespace}".encode() + self._arr.tobytes(), digest_size=16).digest()
        self.ends = boundaries(self.length, block, anchors)  # where chunks end: the keys a cache holds

    def at(self, end: int) -> bytes:
        """The key of the state after the first `end` tokens."""
        if not 0 < end <= self.length:
            raise ValueError(f"no key at {end} for a prompt of {self.length} tokens")
        whole = end // self.block
        if end % self.block == 0:
            return self._blocks[whole - 1]
        base = self._blocks[whole - 1] if whole else _chain(self.namespace)
        tail = self._arr[whole * self.block : end].tobytes()
        return hashlib.blake2b(b"tail" + base + tail, digest_size=16).digest()

    def keyed_ends(self) -> list[tuple[int, bytes]]:
        """(end, key) for every chunk boundary of the prompt (see `boundaries`)."""
        return [(end, self.at(end)) for end in self.ends]


class PrefixCache:
    """Thread-safe LRU of model-state snapshots within a memory budget."""

    def __init__(self, block: int = 128, budget_bytes: int = 1 << 30, store: SnapshotStore | None = None) -> None:
        """`store`: snapshots persisted on disk (`insert(..., persist=True)`), looked up when
        an anchor misses in memory (a restarted server)."""
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.block = block
        self.budget_bytes = budget_bytes
        self.store = store
        self.disk_hits = 0
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._buffer_refs: dict[int, list] = {}  # id(buffer) -> [buffer, refcount]
        self._private_bytes = 0
        # bytes of the buffers in _buffer_refs, kept as they come and go: summing them at every
        # insert cost 10% of the engine's time with a few hundred entries (a buffer's data never
        # changes size: a view that outgrows it moves to a new buffer)
        self._shared_bytes = 0
        self._lock = threading.Lock()
        self.lookups = self.hits = self.hit_tokens = self.lookup_tokens = self.evictions = 0

    # lookup / insert ---------------------------------------------------------------------------
    def keys(self, namespace: str, ids: list[int], anchors: tuple[int, ...] = ()) -> PromptKeys:
        return PromptKeys(namespace, ids, self.block, anchors)

    def match(self, keys: PromptKeys, need_logits: bool = True) -> MatchResult:
        """The longest cached prefix of the prompt (its whole, with logits; or a chunk boundary).
        `need_logits=False` (a prefill-only request: the warmer's repository part) also takes a
        snapshot of the whole prompt, which has no logits: a restarted server's warmer then
        loads its part from disk instead of prefilling it again."""
        with self._lock:
            self.lookups += 1
            self.lookup_tokens += keys.length
            exact = self._entries.get(keys.exact)
            if exact is not None:
                self._entries.move_to_end(keys.exact)
                self.hits += 1
                self.hit_tokens += keys.length
                return MatchResult(exact.state.snapshot(), keys.length, exact.logits)
            anchored = set(keys.anchors)
            for end, key in reversed(keys.keyed_ends()):
                if end == keys.length and need_logits:
                    continue  # a snapshot has no logits: at least the last chunk is recomputed
                entry = self._entries.get(key)
                if entry is None and end in anchored and self.store is not None and self.store.has(key):
                    state = self.store.load(key)
                    if state is not None and state.pos == end:
                        self.disk_hits += 1
                        entry = self._put_locked(key, state, None)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    self.hit_tokens += end
                    return MatchResult(entry.state.snapshot(), end)
            return MatchResult(None, 0)

    def insert(self, keys: PromptKeys, state: ModelState, persist: bool = False) -> None:
        """Remembers `state` as the state after the prompt's first `state.pos` tokens; `persist`
        also writes it to the store (the repository part: a restart resumes from it)."""
        if state.pos not in keys.ends:
            raise ValueError(f"snapshot at {state.pos} of {keys.length} tokens is not on a chunk boundary")
        key = keys.at(state.pos)
        self._put(key, state.kept(), None)
        if persist and self.store is not None and not self.store.has(key):
            try:
                self.store.save(key, state)
            except OSError as exc:  # a full or read-only disk costs a warm restart, nothing more
                log.warning("cannot persist a prefix snapshot: %s", exc)

    def insert_exact(self, keys: PromptKeys, state: ModelState, logits: torch.Tensor) -> None:
        if state.pos != keys.length:
            raise ValueError(f"a state at {state.pos} is not the whole prompt of {keys.length} tokens")
        self._put(keys.exact, state.kept(), logits.detach().clone())

    def _put(self, key: bytes, state: ModelState, logits: torch.Tensor | None) -> None:
        with self._lock:
            self._put_locked(key, state, logits)

    def _put_locked(self, key: bytes, state: ModelState, logits: torch.Tensor | None) -> _Entry:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        buffers, private = _state_storage(state)
        entry = _Entry(state, private + (0 if logits is None else logits.numel() * 4), buffers, logits)
        self._entries[key] = entry
        self._private_bytes += entry.private_bytes
        for b in buffers:
            ref = self._buffer_refs.get(id(b))
            if ref is None:
                ref = self._buffer_refs[id(b)] = [b, 0]
                self._shared_bytes += _nbytes(b.data)
            ref[1] += 1
        self._evict()
        return entry

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
                    self._shared_bytes -= _nbytes(b.data)

    # accounting --------------------------------------------------------------------------------
    def nbytes(self) -> int:
        return self._private_bytes + self._shared_bytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._buffer_refs.clear()
            self._private_bytes = self._shared_bytes = 0

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
                "disk_hits": self.disk_hits,
                "disk_bytes": self.store.nbytes() if self.store is not None else 0,
            }


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
