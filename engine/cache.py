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
        buf = self.buf
        if buf is None or buf.length != self.count or self.count + n > buf.data.shape[1]:
            capacity = max(64, 2 * (self.count + n))
            data = rows.new_empty(rows.shape[0], capacity, rows.shape[2])
            if self.count:
                data[:, : self.count] = buf.data[:, : self.count]
            buf = AppendBuffer(data)
            buf.length = self.count
            self.buf = buf
        buf.data[:, self.count : self.count + n] = rows
        self.count += n
        buf.length = self.count
        return buf.data[:, : self.count]

    def truncate(self, count: int) -> None:
        """Forget rows past `count` (the buffer keeps them for other views)."""
        if count > self.count:
            raise ValueError(f"cannot truncate a view of {self.count} rows to {count}")
        self.count = count

    def nbytes(self) -> int:
        t = self.tensor()
        return 0 if t is None else t.numel() * t.element_size()


@dataclass
class CompressorState:
    pending_kv: torch.Tensor | None = None  # [B, r, c] tokens of the open window (r < ratio)
    pending_gate: torch.Tensor | None = None  # [B, r, c] gate logits incl. ape
    prev_kv: torch.Tensor | None = None  # [B, ratio, d] CSA: A-halves of the last closed window
    prev_gate: torch.Tensor | None = None
    entries: AppendView = field(default_factory=AppendView)  # [B, n_entries, d]


@dataclass
class LayerCache:
    window: torch.Tensor | None = None  # [B, <= W-1, d] raw kv of the latest positions
    comp: CompressorState | None = None
    index: CompressorState | None = None  # the lightning indexer's own compressor (CSA)


@dataclass
class ModelState:
    """Everything one sequence needs to continue at position `pos`."""

    pos: int = 0
    layers: list[LayerCache] = field(default_factory=list)
    mtp: list[LayerCache] = field(default_factory=list)
    mtp_pos: int = 0  # positions the MTP blocks have consumed (they lag the main model by one)
    last_hidden: torch.Tensor | None = None  # [B, 1, n, D] final streams at pos-1 (MTP input)

    @classmethod
    def empty(cls, compress_ratios: list[int], n_mtp: int) -> ModelState:
        def layer(ratio: int) -> LayerCache:
            return LayerCache(
                comp=CompressorState() if ratio else None, index=CompressorState() if ratio == 4 else None
            )

        return cls(layers=[layer(r) for r in compress_ratios], mtp=[layer(0) for _ in range(n_mtp)])

    def snapshot(self) -> ModelState:
        """A copy that shares tensors and append buffers (cheap; safe because of the rules above)."""
        snap = copy.copy(self)
        snap.layers = [_copy_layer(c) for c in self.layers]
        snap.mtp = [_copy_layer(c) for c in self.mtp]
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


def _tensor_bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()
