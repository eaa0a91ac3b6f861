"""V4 sparse attention: `ref.py` (torch; CPU path and oracle), `cpu.py` + `decode.c` (a C
kernel for a few queries on the CPU), `triton.py` (CUDA kernel).

`sparse_attention` has the reference's signature and picks the Triton kernel for CUDA tensors
without autograd (and without `return_comp_probs`, which only the reference computes); on the
CPU, `cpu.sparse_attention` (the C kernel for decode-sized inputs, else the reference).
"""

from __future__ import annotations

import torch

from deepfim.kernels import use_triton
from deepfim.kernels.sparse_attn import cpu


def sparse_attention(
    q: torch.Tensor,
    raw_kv: torch.Tensor,
    raw_start: int,
    q_start: int,
    window: int,
    comp_kv: torch.Tensor | None,
    visible: torch.Tensor | None,
    topk_idx: torch.Tensor | None,
    sink: torch.Tensor,
    scale: float,
    return_comp_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`ref.sparse_attention`, on the Triton or C kernel where one applies."""
    args = (q, raw_kv, raw_start, q_start, window, comp_kv, visible, topk_idx, sink, scale)
    if not return_comp_probs and use_triton(q, raw_kv, comp_kv, sink):
        from deepfim.kernels.sparse_attn import triton as tri

        return tri.sparse_attention(*args)
    return cpu.sparse_attention(*args, return_comp_probs=return_comp_probs)
