"""FP8 (e4m3) and FP4 (e2m1) formats of DeepSeek-V4 checkpoints and activations, fp32 reference.

Weights:
* FP8: float8_e4m3fn values, one power-of-two (ue8m0) scale per 128x128 block.
* FP4 experts: two e2m1 values per byte (element 2k in the low nibble, 2k+1 in the high nibble),
  one ue8m0 scale per 1x32 block along K. Code table [0, .5, 1, 1.5, 2, 3, 4, 6], sign = bit 3.

Activations (what the reference's QAT-faithful inference simulates, `quant_sim`):
* FP8 round trip per block along the last dim, scale 2^ceil(log2(amax / 448)), amax >= 1e-4.
* FP4 round trip per block of 32, scale 2^ceil(log2(amax / 6)), round to nearest, ties to even.
"""

from __future__ import annotations

import torch

FP8_MAX = 448.0
FP4_MAX = 6.0
FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def _scale_to_float(scale: torch.Tensor) -> torch.Tensor:
    """ue8m0 scales arrive as float8_e8m0fnu, uint8 exponents, or already as floats."""
    if scale.dtype == torch.float8_e8m0fnu:
        return scale.float()
    if scale.dtype == torch.uint8:
        return torch.exp2(scale.float() - 127.0)
    return scale.float()


def dequant_fp8_blocks(weight: torch.Tensor, scale: torch.Tensor, block: int = 128) -> torch.Tensor:
    """[M, K] e4m3 weight with [ceil(M/block), ceil(K/block)] scales -> fp32 [M, K]."""
    m, k = weight.shape
    s = _scale_to_float(scale)
    expected = ((m + block - 1) // block, (k + block - 1) // block)
    if tuple(s.shape) != expected:
        raise ValueError(f"FP8 scale shape {tuple(s.shape)} does not match weight {(m, k)} (expected {expected})")
    s = s.repeat_interleave(block, 0)[:m].repeat_interleave(block, 1)[:, :k]
    return weight.float() * s


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """[M, K/2] bytes -> [M, K] fp32 e2m1 values (no scale)."""
    b = packed.contiguous().view(torch.uint8)
    codes = torch.stack((b & 0x0F, b >> 4), dim=-1).flatten(-2).long()  # low nibble first
    magnitude = FP4_VALUES.to(packed.device)[codes & 0x7]
    return torch.where(codes & 0x8 != 0, -magnitude, magnitude)


def dequant_fp4_packed(packed: torch.Tensor, scale: torch.Tensor, block: int = 32) -> torch.Tensor:
    """[M, K/2] packed e2m1 with [M, K/block] ue8m0 scales -> fp32 [M, K]."""
    values = unpack_fp4(packed)
    m, k = values.shape
    s = _scale_to_float(scale)
    if tuple(s.shape) != (m, k // block):
        raise ValueError(
            f"FP4 scale shape {tuple(s.shape)} does not match weight {(m, k)} (expected {(m, k // block)})"
        )
    return (values.view(m, k // block, block) * s.unsqueeze(-1)).view(m, k)


def _pow2_scale(amax: torch.Tensor, qmax: float) -> torch.Tensor:
    return torch.exp2(torch.ceil(torch.log2(amax.clamp_min(1e-4) / qmax)))


def fp8_round_trip(x: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Fake-quantises the last dim to e4m3 in blocks, with power-of-two scales."""
    shape = x.shape
    xb = x.float().reshape(*shape[:-1], shape[-1] // block, block)
    scale = _pow2_scale(xb.abs().amax(-1, keepdim=True), FP8_MAX)
    q = (xb / scale).to(torch.float8_e4m3fn).float() * scale
    return q.reshape(shape).to(x.dtype)


def fp4_round(x: torch.Tensor) -> torch.Tensor:
    """Rounds to the nearest e2m1 value, ties to even, saturating at +-6."""
    a = x.abs().clamp_max(FP4_MAX)
    # midpoints between representable magnitudes; ties go to the even code (0, 1, 2, 4)
    bounds = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], device=x.device)
    idx = torch.bucketize(a, bounds, right=False)  # a == bound -> lower index
    tie_up = torch.isin(a, bounds[[1, 3, 5]])  # 0.75 -> 1, 1.75 -> 2, 3.5 -> 4 (even codes above)
    idx = idx + tie_up.long()
    return torch.sign(x) * FP4_VALUES.to(x.device)[idx]


def fp4_round_trip(x: torch.Tensor, block: int = 32) -> torch.Tensor:
    """Fake-quantises the last dim to e2m1 in blocks, with power-of-two scales."""
    shape = x.shape
    xb = x.float().reshape(*shape[:-1], shape[-1] // block, block)
    scale = _pow2_scale(xb.abs().amax(-1, keepdim=True), FP4_MAX)
    return (fp4_round(xb / scale) * scale).reshape(shape).to(x.dtype)


def quantize_fp8_blocks(w: torch.Tensor, block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 [M, K] -> (e4m3 weight, e8m0 block scales): the checkpoint format."""
    m, k = w.shape
    pm, pk = (-m) % block, (-k) % block
    padded = torch.nn.functional.pad(w.float(), (0, pk, 0, pm))
    blocks = padded.view((m + pm) // block, block, (k + pk) // block, block)
    scale = _pow2_scale(blocks.abs().amax(dim=(1, 3)), FP8_MAX)  # [M/b, K/b]
    q = (blocks / scale[:, None, :, None]).to(torch.float8_e4m3fn).view(m + pm, k + pk)[:m, :k]
    return q.contiguous(), scale.to(torch.float8_e8m0fnu)


def quantize_fp4_packed(w: torch.Tensor, block: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 [M, K] -> (int8 [M, K/2] packed e2m1, e8m0 [M, K/block] scales)."""
    m, k = w.shape
    wb = w.float().view(m, k // block, block)
    scale = _pow2_scale(wb.abs().amax(-1, keepdim=True), FP4_MAX)
    v = fp4_round(wb / scale).view(m, k)
    magnitude_code = torch.bucketize(v.abs(), FP4_VALUES.to(v.device), right=False)  # exact values -> their index
    codes = (magnitude_code | ((v < 0).long() << 3)).to(torch.uint8).view(m, k // 2, 2)
    packed = (codes[..., 0] | (codes[..., 1] << 4)).to(torch.uint8).view(torch.int8)
    return packed.contiguous(), scale.squeeze(-1).to(torch.float8_e8m0fnu)


def hadamard(dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Normalised Walsh-Hadamard matrix H / sqrt(dim) (Sylvester construction)."""
    if dim & (dim - 1):
        raise ValueError(f"Hadamard size must be a power of two, got {dim}")
    h = torch.ones(1, 1, device=device)
    while h.shape[0] < dim:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / dim**0.5
