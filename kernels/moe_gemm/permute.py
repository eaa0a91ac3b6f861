"""Token permutation by expert for the grouped MoE GEMM, in Triton (a stable counting sort).

The N x K (token, expert) pairs (pair p = token * K + j) are laid out by expert, each expert's
pairs in pair order and padded with -1 to a multiple of BLOCK_M rows, so every BLOCK_M-row block
of the grouped GEMM belongs to one expert (`ref.padded_layout` is the oracle):

1. `_expert_count_kernel`: per block of BLOCK_P pairs, how many go to each expert -> counts [B, E];
2. `_expert_plan_kernel` (one program): per-block prefixes of those counts (cumsum over blocks),
   each expert's first row (a multiple of BLOCK_M) and `block_end[e]` (cumulative row blocks up
   to expert e), and the -1 padding rows;
3. `_expert_scatter_kernel`: each pair's row = first row of its expert + its block's prefix + its
   rank among the earlier pairs of its block with the same expert (a cumsum of one-hot rows).

No step reads a count back on the host, so the layout's size is the bound
`ceil(P / BLOCK_M) + min(E, P)` blocks; the GEMM programs of blocks past the last expert exit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

BLOCK_P = 256  # pairs per count / scatter program
BLOCK_E = 64  # experts per one-hot tile
BLOCK_B = 64  # count rows per cumsum tile in the plan


@triton.jit
def _expert_count_kernel(idx_ptr, counts_ptr, P, E, BLOCK_P: tl.constexpr, BLOCK_E: tl.constexpr):
    b = tl.program_id(0)
    offs = b.to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    ids = tl.load(idx_ptr + offs, mask=offs < P, other=-1).to(tl.int32)
    for e0 in range(0, E, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        hits = (ids[:, None] == offs_e[None, :]).to(tl.int32)
        tl.store(counts_ptr + b * E + offs_e, tl.sum(hits, axis=0), mask=offs_e < E)


@triton.jit
def _expert_plan_kernel(
    counts_ptr, prefix_ptr, start_ptr, block_end_ptr, rows_ptr, n_count_blocks, E,
    BLOCK_M: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr,
):  # fmt: skip
    carry = tl.zeros([1], tl.int32)  # row blocks taken by the experts of earlier chunks
    offs_j = tl.arange(0, BLOCK_M)
    for e0 in range(0, E, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        mask_e = offs_e < E
        total = tl.zeros([BLOCK_E], tl.int32)
        for b0 in range(0, n_count_blocks, BLOCK_B):
            offs_b = b0 + tl.arange(0, BLOCK_B)
            msk = (offs_b < n_count_blocks)[:, None] & mask_e[None, :]
            at = offs_b[:, None] * E + offs_e[None, :]
            c = tl.load(counts_ptr + at, mask=msk, other=0)
            tl.store(prefix_ptr + at, tl.cumsum(c, axis=0) - c + total[None, :], mask=msk)
            total += tl.sum(c, axis=0)
        blocks = (total + BLOCK_M - 1) // BLOCK_M
        end = tl.cumsum(blocks, axis=0) + carry
        start = (end - blocks) * BLOCK_M
        tl.store(start_ptr + offs_e, start, mask=mask_e)
        tl.store(block_end_ptr + offs_e, end, mask=mask_e)
        # rows after an expert's pairs up to the end of its last block are padding
        pad = mask_e[:, None] & ((total[:, None] + offs_j[None, :]) < blocks[:, None] * BLOCK_M)
        tl.store(rows_ptr + start[:, None] + total[:, None] + offs_j[None, :],
                 tl.full([BLOCK_E, BLOCK_M], -1, tl.int32), mask=pad)  # fmt: skip
        carry += tl.sum(blocks, axis=0)


@triton.jit
def _expert_scatter_kernel(
    idx_ptr, prefix_ptr, start_ptr, rows_ptr, P, E, BLOCK_P: tl.constexpr, BLOCK_E: tl.constexpr
):  # fmt: skip
    b = tl.program_id(0)
    offs = b.to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask = offs < P
    ids = tl.load(idx_ptr + offs, mask=mask, other=-1).to(tl.int32)
    row = tl.zeros([BLOCK_P], tl.int32)
    for e0 in range(0, E, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        mask_e = offs_e < E
        hits = (ids[:, None] == offs_e[None, :]).to(tl.int32)
        rank = tl.cumsum(hits, axis=0) - hits  # earlier pairs of this block with the same expert
        base = tl.load(start_ptr + offs_e, mask=mask_e, other=0) + tl.load(prefix_ptr + b * E + offs_e, mask=mask_e,
                                                                           other=0)  # fmt: skip
        row += tl.sum(hits * (rank + base[None, :]), axis=1)
    tl.store(rows_ptr + row, offs.to(tl.int32), mask=mask)


@dataclass(frozen=True)
class Permutation:
    """Where each (token, expert) pair sits in the grouped GEMM's rows.

    rows: [n_blocks * block_m] int32 pair ids, -1 for padding; valid up to block_end[-1] * block_m.
    block_end: [E] int32, cumulative row blocks up to and including expert e.
    n_blocks: the launch bound on row blocks (programs past block_end[-1] exit).
    """

    rows: torch.Tensor
    block_end: torch.Tensor
    n_blocks: int
    block_m: int
    n_experts: int
    topk: int
    pairs: int


def check_expert_ids(idx: torch.Tensor, n_experts: int) -> None:
    """ValueError for ids outside [0, E). Reads two numbers back, so it is skipped while a CUDA graph
    is being captured (a graph replays the routing kernel's ids, which are in range by construction)."""
    if idx.numel() == 0 or (idx.is_cuda and torch.cuda.is_current_stream_capturing()):
        return
    lo, hi = torch.aminmax(idx)
    if int(lo) < 0 or int(hi) >= n_experts:
        raise ValueError(f"expert ids must lie in [0, {n_experts}), got [{int(lo)}, {int(hi)}]")


def permute(idx: torch.Tensor, n_experts: int, block_m: int) -> Permutation:
    """Lays the pairs of idx [N, K] out by expert in blocks of block_m rows (see the module doc)."""
    flat = idx.reshape(-1).contiguous()
    pairs, dev = flat.numel(), idx.device
    n_count_blocks = triton.cdiv(pairs, BLOCK_P)
    n_blocks = triton.cdiv(pairs, block_m) + min(n_experts, pairs)
    counts = torch.empty(n_count_blocks, n_experts, dtype=torch.int32, device=dev)
    prefix = torch.empty_like(counts)
    start = torch.empty(n_experts, dtype=torch.int32, device=dev)
    block_end = torch.empty(n_experts, dtype=torch.int32, device=dev)
    rows = torch.empty(n_blocks * block_m, dtype=torch.int32, device=dev)
    if pairs:
        _expert_count_kernel[(n_count_blocks,)](flat, counts, pairs, n_experts, BLOCK_P=BLOCK_P, BLOCK_E=BLOCK_E)
        _expert_plan_kernel[(1,)](counts, prefix, start, block_end, rows, n_count_blocks, n_experts,
                                  BLOCK_M=block_m, BLOCK_B=BLOCK_B, BLOCK_E=BLOCK_E, num_warps=8)  # fmt: skip
        _expert_scatter_kernel[(n_count_blocks,)](flat, prefix, start, rows, pairs, n_experts,
                                                  BLOCK_P=BLOCK_P, BLOCK_E=BLOCK_E, num_warps=8)  # fmt: skip
    else:
        block_end.zero_()
    return Permutation(rows, block_end, n_blocks, block_m, n_experts, idx.shape[-1] if idx.dim() else 1, pairs)
