"""Routed experts of a V4 MoE layer (grouped GEMM over FP4 or dense experts): `ref.py` (torch; CPU
path and oracle), `permute.py` + `triton.py` (CUDA kernels).

`experts_forward` has the reference's signature and picks the Triton kernels for CUDA tensors
without autograd and bf16 / fp32 activations; everything else goes to the reference.
"""

from __future__ import annotations

import torch

from deepfim.kernels import use_triton
from deepfim.kernels.moe_gemm import ref
from deepfim.kernels.moe_gemm.ref import ExpertWeights

__all__ = ["ExpertWeights", "experts_forward"]


def experts_forward(
    x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor, experts: ExpertWeights, limit: float
) -> torch.Tensor:
    """`ref.experts_forward`, on the Triton kernels where they apply."""
    tensors = (experts.w1, experts.w2, experts.w3, experts.s1, experts.s2, experts.s3)
    if x.dtype in (torch.bfloat16, torch.float32) and use_triton(x, weights, idx, *tensors):
        from deepfim.kernels.moe_gemm import triton as tri

        return tri.experts_forward(x, weights, idx, experts, limit)
    return ref.experts_forward(x, weights, idx, experts, limit)
