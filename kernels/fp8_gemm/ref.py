"""FP8 block-scaled linear layer, fp32 torch reference (the CPU path and the Triton kernel's oracle).

`y = x @ W^T` where W is stored as in V4 checkpoints: float8_e4m3fn values [N, K] and one ue8m0
(power-of-two) scale per 128 x 128 block, [ceil(N/128), ceil(K/128)] (see kernels/quant/README.md).
The weight is dequantised with `quant.ref.dequant_fp8_blocks` and multiplied in fp32.
"""

from __future__ import annotations

import torch

from deepfim.kernels.quant.ref import dequant_fp8_blocks


def fp8_linear(
    x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, block: int = 128, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """x [..., K] (any float dtype) times the FP8 weight [N, K] -> [..., N] in `out_dtype` (default x's).

    Args:
        weight: float8_e4m3fn [N, K].
        scale: [ceil(N/block), ceil(K/block)] as float8_e8m0fnu, uint8 exponent bytes or floats.
    """
    if weight.dim() != 2 or x.dim() == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x shape {tuple(x.shape)} does not match FP8 weight shape {tuple(weight.shape)} "
                         "(need x [..., K] and weight [N, K])")  # fmt: skip
    w = dequant_fp8_blocks(weight, scale, block)
    y = x.float() @ w.t()
    return y.to(out_dtype or x.dtype)
