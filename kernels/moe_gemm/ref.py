"""Routed experts of a V4 MoE layer over stacked (bf16 / fp32) or FP4 expert weights, torch reference.

The math is `moe.ref.experts_forward` (SwiGLU with the clamp, routing weight before the down
projection, sum over each token's K experts); FP4 experts (packed e2m1, one ue8m0 scale per 1 x 32
along K, the checkpoint layout) are dequantised with `quant.ref.dequant_fp4_packed`, only those the
tokens use, and everything runs in fp32. `permute_by_expert` / `padded_layout` are the oracles of
the Triton kernels' token permutation.

Dimension legend: N tokens, D hidden, E routed experts, K experts per token, I expert width,
P = N * K (token, expert) pairs; pair p = token * K + j.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepfim.kernels.moe.ref import experts_forward as dense_experts_forward
from deepfim.kernels.quant.ref import dequant_fp4_packed

FP4_BLOCK = 32  # elements per ue8m0 scale along K (the MX block)


@dataclass(frozen=True)
class ExpertWeights:
    """Stacked routed experts: W1 (gate) and W3 (up) [E, I, D], W2 (down) [E, D, I].

    Dense: bf16 / fp32 tensors of those shapes, no scales. FP4 (`s1`, `s2`, `s3` given): int8 / uint8
    packed e2m1, [E, I, D/2] and [E, D, I/2] (element 2k in the low nibble), with ue8m0 scales
    [E, I, D/32] and [E, D, I/32] (float8_e8m0fnu, uint8 exponent bytes or floats).
    """

    w1: torch.Tensor
    w2: torch.Tensor
    w3: torch.Tensor
    s1: torch.Tensor | None = None
    s2: torch.Tensor | None = None
    s3: torch.Tensor | None = None

    @property
    def fp4(self) -> bool:
        return self.s1 is not None

    def shape(self) -> tuple[int, int, int]:
        """(E, I, D), after checking that all six tensors agree; ValueError naming the culprit otherwise."""
        scales = (self.s1, self.s2, self.s3)
        if any(s is None for s in scales) and any(s is not None for s in scales):
            raise ValueError("FP4 experts need all three scales s1, s2, s3 (dense experts none)")
        if any(w.dim() != 3 for w in (self.w1, self.w2, self.w3)):
            raise ValueError(f"expert weights must be 3-D [E, rows, cols], got {self._shapes()}")
        pack = 2 if self.fp4 else 1
        e, inter, d = self.w1.shape[0], self.w1.shape[1], self.w1.shape[2] * pack
        expected = {"w1": (e, inter, d // pack), "w3": (e, inter, d // pack), "w2": (e, d, inter // pack)}
        if self.fp4:
            expected |= {"s1": (e, inter, d // FP4_BLOCK), "s3": (e, inter, d // FP4_BLOCK),
                         "s2": (e, d, inter // FP4_BLOCK)}  # fmt: skip
            if d % FP4_BLOCK or inter % FP4_BLOCK:
                raise ValueError(f"FP4 experts need D and I to be multiples of {FP4_BLOCK}, got D={d}, I={inter}")
        for name, want in expected.items():
            if tuple(getattr(self, name).shape) != want:
                raise ValueError(f"expert {name} shape {tuple(getattr(self, name).shape)} != {want} "
                                 f"(E={e}, I={inter}, D={d}; all: {self._shapes()})")  # fmt: skip
        return e, inter, d

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        names = ("w1", "w2", "w3", "s1", "s2", "s3")
        return {n: tuple(getattr(self, n).shape) for n in names if getattr(self, n) is not None}

    def dense_subset(self, experts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """fp32 W1, W2, W3 of the given expert ids only (FP4 dequantised)."""

        def pick(w: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
            w = w[experts]
            if s is None:
                return w.float()
            rows = dequant_fp4_packed(w.flatten(0, 1), s[experts].flatten(0, 1), FP4_BLOCK)
            return rows.view(len(experts), w.shape[1], -1)

        return pick(self.w1, self.s1), pick(self.w2, self.s2), pick(self.w3, self.s3)


def experts_forward(
    x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor, experts: ExpertWeights, limit: float, expert_chunk=64
) -> torch.Tensor:
    """Sum over each token's K experts of weight * W2 swiglu(W1 x, W3 x), in fp32, returned in x's dtype.

    Args:
        x: [N, D]; weights: [N, K] routing weights; idx: [N, K] expert ids in [0, E).
        limit: swiglu clamp (V4: 10; <= 0: none).
        expert_chunk: experts dequantised at a time when the tokens use more (fp32 copies of all 256
            V4-Flash experts would take 25 GB); each chunk's pairs then add into the output.
    """
    e, _, d = experts.shape()
    if x.dim() != 2 or x.shape[1] != d or weights.shape != idx.shape or idx.dim() != 2 or idx.shape[0] != x.shape[0]:
        raise ValueError(f"x {tuple(x.shape)}, weights {tuple(weights.shape)}, idx {tuple(idx.shape)} do not fit "
                         f"experts with D={d} (need x [N, D], weights and idx [N, K])")  # fmt: skip
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= e):
        raise ValueError(f"expert ids must lie in [0, {e}), got [{int(idx.min())}, {int(idx.max())}]")
    if idx.numel() == 0:
        return torch.zeros_like(x)
    used = torch.unique(idx)  # only these experts are dequantised
    if len(used) <= expert_chunk:
        w1, w2, w3 = experts.dense_subset(used)
        local = torch.searchsorted(used, idx)
        return dense_experts_forward(x.float(), weights.float(), local, w1, w2, w3, limit).to(x.dtype)
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    token = torch.arange(idx.shape[0], device=idx.device)[:, None].expand_as(idx)
    for chunk in used.split(expert_chunk):
        sel = torch.isin(idx, chunk)  # this chunk's pairs, one row each
        w1, w2, w3 = experts.dense_subset(chunk)
        local = torch.searchsorted(chunk, idx[sel])[:, None]
        y = dense_experts_forward(x.float()[token[sel]], weights.float()[sel][:, None], local, w1, w2, w3, limit)
        out.index_add_(0, token[sel], y)
    return out.to(x.dtype)


def permute_by_expert(idx: torch.Tensor, n_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs sorted by expert, stable (pair p = token * K + j), and the pairs per expert.

    Returns:
        order [P] int64 (argsort of the flattened ids, stable), counts [E] int64.
    """
    flat = idx.reshape(-1).long()
    return flat.argsort(stable=True), torch.bincount(flat, minlength=n_experts)


def padded_layout(idx: torch.Tensor, n_experts: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The grouped GEMM's row layout: each expert's pairs (in `permute_by_expert` order) start on a
    multiple of block_m and are padded with -1 to one; rows past the last expert are not listed.

    Returns:
        rows [sum_e ceil(count_e / block_m) * block_m] int32 pair ids or -1; block_end [E] int32, the
        cumulative number of row blocks up to and including expert e.
    """
    order, counts = permute_by_expert(idx, n_experts)
    blocks = (counts + block_m - 1) // block_m
    rows = torch.full((int(blocks.sum()) * block_m,), -1, dtype=torch.int32)
    start_block = torch.cumsum(blocks, 0) - blocks
    taken = 0
    for e, count in enumerate(counts.tolist()):
        start = int(start_block[e]) * block_m
        rows[start : start + count] = order[taken : taken + count].int()
        taken += count
    return rows, torch.cumsum(blocks, 0).int()
