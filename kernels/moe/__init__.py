"""MoE routing and experts: `ref.py` (torch; CPU path and oracle), `triton.py` (CUDA routing kernel).

`route` has the reference's signature and picks the Triton kernel for CUDA tensors without
autograd; expert compute (`ref.experts_forward`) has no kernel yet.
"""

from __future__ import annotations

import torch

from deepfim.kernels import use_triton
from deepfim.kernels.moe import ref


def route(
    scores: torch.Tensor,
    k: int,
    route_scale: float,
    bias: torch.Tensor | None = None,
    fixed_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`ref.route`, on the Triton kernel where it applies (experts then come highest-first)."""
    if use_triton(scores, bias, fixed_idx):
        from deepfim.kernels.moe import triton as tri

        return tri.route(scores.contiguous(), k, route_scale, bias, fixed_idx)
    return ref.route(scores, k, route_scale, bias, fixed_idx)
