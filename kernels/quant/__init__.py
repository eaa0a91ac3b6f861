"""FP8 / FP4 formats: `ref.py` (torch; CPU path, loader and oracle), `triton.py` (CUDA kernels).

The functions below have the references' signatures and pick the Triton kernels for CUDA
tensors without autograd.
"""

from __future__ import annotations

import torch

from deepfim.kernels import use_triton
from deepfim.kernels.quant import ref


def fp8_round_trip(x: torch.Tensor, block: int = 128) -> torch.Tensor:
    """`ref.fp8_round_trip`, on the Triton kernel where it applies."""
    if use_triton(x):
        from deepfim.kernels.quant import triton as tri

        return tri.fp8_round_trip(x.contiguous(), block)
    return ref.fp8_round_trip(x, block)


def fp4_round_trip(x: torch.Tensor, block: int = 32) -> torch.Tensor:
    """`ref.fp4_round_trip`, on the Triton kernel where it applies."""
    if use_triton(x):
        from deepfim.kernels.quant import triton as tri

        return tri.fp4_round_trip(x.contiguous(), block)
    return ref.fp4_round_trip(x, block)


def dequant_fp8_blocks(weight: torch.Tensor, scale: torch.Tensor, block: int = 128) -> torch.Tensor:
    """`ref.dequant_fp8_blocks`, on the Triton kernel where it applies."""
    if use_triton(weight, scale):
        from deepfim.kernels.quant import triton as tri

        return tri.dequant_fp8_blocks(weight.contiguous(), scale, block)
    return ref.dequant_fp8_blocks(weight, scale, block)


def dequant_fp4_packed(packed: torch.Tensor, scale: torch.Tensor, block: int = 32) -> torch.Tensor:
    """`ref.dequant_fp4_packed`, on the Triton kernel where it applies."""
    if use_triton(packed, scale):
        from deepfim.kernels.quant import triton as tri

        return tri.dequant_fp4_packed(packed.contiguous(), scale.contiguous(), block)
    return ref.dequant_fp4_packed(packed, scale, block)
