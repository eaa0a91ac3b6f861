"""FP8 block-scaled linear layer: `ref.py` (torch; CPU path and oracle), `triton.py` (CUDA kernel).

`fp8_linear` has the reference's signature and picks the Triton kernel for CUDA tensors without
autograd and bf16 / fp32 activations (the kernel's two precisions); everything else goes to the
reference.
"""

from __future__ import annotations

import torch

from deepfim.kernels import use_triton
from deepfim.kernels.fp8_gemm import ref


def fp8_linear(
    x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, block: int = 128, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """`ref.fp8_linear`, on the Triton kernel where it applies."""
    if x.dtype in (torch.bfloat16, torch.float32) and use_triton(x, weight, scale):
        from deepfim.kernels.fp8_gemm import triton as tri

        return tri.fp8_linear(x, weight.contiguous(), scale, block, out_dtype)
    return ref.fp8_linear(x, weight, scale, block, out_dtype)
