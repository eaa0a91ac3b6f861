"""Incremental V4 state: what a sequence carries from one forward call to the next.

V4 state at position p is
* append-only, shareable: the compressed entries and indexer keys formed before p;
* small, per position: the last W-1 raw kv rows (sliding window), the projections of the tokens
  of each compressor's open window, and for CSA the A-halves of the last closed window.

Tensors of the second kind are never modified in place, only replaced, so a snapshot is a
shallow copy. Append-only rows live in `AppendBuffer`s that several states can share as
prefixes: a state appends in place only while it is the buffer's tip; otherwise it copies its
prefix first (copy on divergence). This is what lets the prefix cache resume a sequence at any
128-token boundary without recomputing (or copying) the repository context.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from deepfim.engine.model.config import LayerKind


class AppendBuffer:
    """Rows [B, capacity, d] of which the first `length` have been written."""

    __slots__ = ("data", "length")

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data
        self.length = 0


class AppendView:
    """One state's view of an AppendBuffer: its first `count` rows."""

    __slots__ = ("buf", "count")

    def __init__(self, buf: AppendBuffer | None = None, count: int = 0) -> None:
        self.buf = buf
        self.count = count

    def tensor(self) -> torch.Tensor | None:
        return None if self.buf is None else self.buf.data[:, : self.count]

    def append(self, rows: torch.Tensor) -> torch.Tensor:
        """Appends [B, n, d] rows and returns all rows of this view."""
        n = rows.shape[1]
        data = self.reserve(n, rows)
        data[:, self.count : self.count + n] = rows
        self.grow(n)
        return data[:, : self.count]

    def reserve(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """Makes this view the tip of a buffer with room for `n` more rows ([B, *, d] like `like`)
        and returns the buffer's data; whoever writes rows count..count+n-1 then calls `grow`."""
        buf = self.buf
        if buf is None or buf.length != self.count or self.count + n > buf.data.shape[1]:
            capacity = max(64, 2 * (self.count + n))
            data = like.new_empty(like.shape[0], capacity, like.shape[2])
            if self.count:
                data[:, : self.count] = buf.data[:, : self.count]
            buf = AppendBuffer(data)
            buf.length = self.count
            self.buf = buf
        return buf.data

    def grow(self, n: int) -> None:
        """Counts `n` rows written after `reserve`."""
        self.count += n
        self.buf.length = self.count

    def truncate(self, count: int) -> None:
        """Forget rows past `count` (the buffer keeps them for other views)."""
        if count > self.count:
            raise ValueError(f"cannot truncate a view of {self.count} rows to {count}")
        self.count = count

    def rewind(self, count: int) -> None:
        """Takes back rows this view just appended; as the tip, it may overwrite them next time."""
        if self.buf is not None and self.buf.length == self.count:
            self.buf.length = count
        self.truncate(count)

    def nbytes(self) -> int:
        t = self.tensor()
        return 0 if t is None else t.numel() * t.element_size()


@dataclass
class CompressorUndo:
    """What one forward call changed in a compressor, so its last tokens can be taken back."""

    ratio: int
    overlap: bool
    pending_kv: torch.Tensor | None  # state before the call
    pending_gate: torch.Tensor | None
    prev_kv: torch.Tensor | None
    prev_gate: torch.Tensor | None
    entries_before: int
    chunk_kv: torch.Tensor  # [B, T, c] this call's projections
    chunk_gate: torch.Tensor  # [B, T, c] incl. ape


@dataclass
class CompressorState:
    pending_kv: torch.Tensor | None = None  # [B, r, c] tokens of the open window (r < ratio)
    pending_gate: torch.Tensor | None = None  # [B, r, c] gate logits incl. ape
    prev_kv: torch.Tensor | None = None  # [B, ratio, d] CSA: A-halves of the last closed window
    prev_gate: torch.Tensor | None = None
    entries: AppendView = field(default_factory=AppendView)  # [B, n_entries, d]
    undo: CompressorUndo | None = None

    def keep_first(self, keep: int) -> None:
        """Undoes the last call's tokens after the first `keep` (speculative rejection)."""
        u = self.undo
        kv, gate = u.chunk_kv[:, :keep], u.chunk_gate[:, :keep]
        if u.pending_kv is not None and u.pending_kv.shape[1]:
            kv, gate = torch.cat([u.pending_kv, kv], 1), torch.cat([u.pending_gate, gate], 1)
        n_win = kv.shape[1] // u.ratio
        self.pending_kv, self.pending_gate = kv[:, n_win * u.ratio :], gate[:, n_win * u.ratio :]
        if u.overlap:
            if n_win:
                d = kv.shape[-1] // 2
                last = slice((n_win - 1) * u.ratio, n_win * u.ratio)
                self.prev_kv, self.prev_gate = kv[:, last, :d], gate[:, last, :d]
            else:
                self.prev_kv, self.prev_gate = u.prev_kv, u.prev_gate
        self.entries.rewind(u.entries_before + n_win)
        self.undo = None


@dataclass
class LayerCache:
    window: torch.Tensor | None = None  # [B, <= W-1, d] raw kv of the latest positions
    comp: CompressorState | None = None
    index: CompressorState | None = None  # the lightning indexer's own compressor (CSA)
    undo_window: tuple[torch.Tensor | None, torch.Tensor] | None = None  # (window before, this call's kv)

    def keep_first(self, keep: int, window: int) -> None:
        before, chunk = self.undo_window
        raw = chunk[:, :keep] if before is None else torch.cat([before, chunk[:, :keep]], 1)
        self.window = raw[:, -(window - 1) :] if window > 1 else raw[:, :0]
        self.undo_window = None
        for comp in (self.comp, self.index):
            if comp is not None and comp.undo is not None:
                comp.keep_first(keep)


@dataclass
class ModelState:
    """Everything one sequence needs to continue at position `pos`."""

    pos: int = 0
    layers: list[LayerCache] = field(default_factory=list)
    mtp: list[LayerCache] = field(default_factory=list)
    mtp_pos: int = 0  # positions the MTP blocks have consumed (they lag the main model by one)
    last_hidden: torch.Tensor | None = None  # [B, 1, n, D] final streams at pos-1 (MTP input)
    # a chunk was computed on the module path while a C decode step was compiling (a first
    # start): later chunks take the C step, whose sums differ from the modules' by rounding, so
    # this state is not what a cold run computes and is never persisted (serving/model_runner.py)
    on_modules: bool = False

    @classmethod
    def empty(cls, layer_kinds: tuple[LayerKind, ...], n_mtp: int) -> ModelState:
        def layer(kind: LayerKind) -> LayerCache:
            compressed = kind is not LayerKind.SLIDING
            return LayerCache(
                comp=CompressorState() if compressed else None,
                index=CompressorState() if kind is LayerKind.CSA else None,
            )

        return cls(layers=[layer(k) for k in layer_kinds], mtp=[layer(LayerKind.SLIDING) for _ in range(n_mtp)])

    def keep_first(self, keep: int, start: int, window: int) -> None:
        """After a forward call of tokens starting at `start`, keep only the first `keep` of them.

        Used when speculative drafts are rejected: window rows, open compressor windows and
        appended entries are restored from the call's undo records, without recomputation.
        """
        for cache in self.layers:
            cache.keep_first(keep, window)
        self.pos = start + keep

    def snapshot(self) -> ModelState:
        """A copy that shares tensors and append buffers (cheap; safe because of the rules above)."""
        snap = copy.copy(self)
        snap.layers = [_copy_layer(c) for c in self.layers]
        snap.mtp = [_copy_layer(c) for c in self.mtp]
        return snap

    def kept(self) -> ModelState:
        """A snapshot to keep (the prefix cache's): without the undo records, which hold the last
        call's whole chunk, and with its small tensors copied out of the chunk-sized tensors they
        are views of, so that it holds only its own bytes. Snapshots made with `snapshot` kept the
        projections of every 128-token chunk alive through empty slices: the cache held 3.5x the
        bytes it counted (32K tokens: 199 MB for 57), and past 256K tokens the process grew to
        10.8 GB."""
        snap = self.snapshot()
        for c in [*snap.layers, *snap.mtp]:
            c.window, c.undo_window = _own(c.window), None
            for s in (c.comp, c.index):
                if s is not None:
                    s.pending_kv, s.pending_gate = _own(s.pending_kv), _own(s.pending_gate)
                    s.prev_kv, s.prev_gate, s.undo = _own(s.prev_kv), _own(s.prev_gate), None
        snap.last_hidden = _own(snap.last_hidden)
        return snap

    def nbytes(self) -> int:
        """Memory held by this state (shared buffers counted in full)."""
        total = 0
        for c in [*self.layers, *self.mtp]:
            total += _tensor_bytes(c.window)
            for s in (c.comp, c.index):
                if s is not None:
                    total += s.entries.nbytes()
                    for t in (s.pending_kv, s.pending_gate, s.prev_kv, s.prev_gate):
                        total += _tensor_bytes(t)
        return total


def _copy_layer(c: LayerCache) -> LayerCache:
    out = copy.copy(c)
    for name in ("comp", "index"):
        s = getattr(c, name)
        if s is not None:
            s2 = copy.copy(s)
            s2.entries = AppendView(s.entries.buf, s.entries.count)
            setattr(out, name, s2)
    return out


def _own(t: torch.Tensor | None) -> torch.Tensor | None:
    """`t`, or a copy of it where it is a view of a larger storage."""
    if t is None or t.untyped_storage().nbytes() <= t.numel() * t.element_size():
        return t
    return t.clone()


def _tensor_bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()
