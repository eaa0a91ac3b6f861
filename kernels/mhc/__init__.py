"""mHC: `ref.py` (torch; CPU path and oracle), `cpu.py` (C kernels for the CPU: Sinkhorn, fused hc_pre), `triton.py`
(CUDA kernels: Sinkhorn, fused hc_pre / hc_head, hc_post).

The functions below have the references' signatures and pick the Triton kernels for CUDA
tensors without autograd; on the CPU they are `ref` (Sinkhorn: the C kernel of `cpu.py`).
"""

from __future__ import annotations

import torch

from deepfim.kernels import use_triton
from deepfim.kernels.mhc import cpu, ref


def sinkhorn(logits: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
    """`ref.sinkhorn`: Triton on CUDA, the C kernel (or the ref) on the CPU."""
    if use_triton(logits) and logits.dtype == torch.float32 and logits.shape[-1] <= 8:
        from deepfim.kernels.mhc import triton as tri

        return tri.sinkhorn(logits.contiguous(), iters, eps)
    return cpu.sinkhorn(logits, iters, eps)


def hc_pre(
    x: torch.Tensor, fn: torch.Tensor, base: torch.Tensor, scale: torch.Tensor, iters: int, eps: float, norm_eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`ref.hc_pre`: Triton on CUDA (with its own fused Sinkhorn); on the CPU the C kernels of
    `cpu.py` (the whole op fused for a few tokens, else the reference with the C Sinkhorn)."""
    if use_triton(x, fn, base, scale) and x.shape[-2] <= 8:
        from deepfim.kernels.mhc import triton as tri

        return tri.hc_pre(x.contiguous(), fn.contiguous(), base, scale, iters, eps, norm_eps)
    return cpu.hc_pre(x, fn, base, scale, iters, eps, norm_eps)


def hc_post(f: torch.Tensor, x: torch.Tensor, post: torch.Tensor, comb: torch.Tensor) -> torch.Tensor:
    """`ref.hc_post`, on the Triton kernel where it applies."""
    if use_triton(f, x, post, comb) and x.shape[-2] <= 8:
        from deepfim.kernels.mhc import triton as tri

        return tri.hc_post(f.contiguous(), x.contiguous(), post.contiguous(), comb.contiguous())
    return ref.hc_post(f, x, post, comb)


def hc_head(
    x: torch.Tensor, fn: torch.Tensor, base: torch.Tensor, scale: torch.Tensor, eps: float, norm_eps: float
) -> torch.Tensor:
    """`ref.hc_head`, on the Triton kernel where it applies."""
    if use_triton(x, fn, base, scale) and x.shape[-2] <= 8:
        from deepfim.kernels.mhc import triton as tri

        return tri.hc_head(x.contiguous(), fn.contiguous(), base, scale, eps, norm_eps)
    return ref.hc_head(x, fn, base, scale, eps, norm_eps)
