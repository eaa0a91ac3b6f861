"""FP8 e4m3fn, FP4 e2m1 and ue8m0 decoders written from the format definitions (OCP 8-bit floating
point spec, OCP MX spec v1.0), in Python floats, independent of kernels/quant: the oracle the
kernels' in-GEMM dequantisation is checked against bit for bit."""

from __future__ import annotations

import math

import torch


def e4m3(byte: int) -> float:
    """sign | 4 exponent bits (bias 7) | 3 mantissa bits; exponent 0 is subnormal; S.1111.111 is NaN."""
    sign, exp, man = byte >> 7, (byte >> 3) & 0xF, byte & 0x7
    if exp == 0xF and man == 0x7:
        return math.nan
    mag = man / 8 * 2.0**-6 if exp == 0 else (1 + man / 8) * 2.0 ** (exp - 7)
    return -mag if sign else mag


def e2m1(code: int) -> float:
    """sign | 2 exponent bits (bias 1) | 1 mantissa bit; exponent 0 is subnormal (0 or 0.5)."""
    sign, exp, man = code >> 3, (code >> 1) & 0x3, code & 0x1
    mag = man / 2 if exp == 0 else (1 + man / 2) * 2.0 ** (exp - 1)
    return -mag if sign else mag


def ue8m0(byte: int) -> float:
    """An unsigned power of two 2^(byte - 127); 0xFF is NaN."""
    return math.nan if byte == 0xFF else 2.0 ** (byte - 127)


def fp8_weight(weight_bytes: torch.Tensor, scale: torch.Tensor, block: int) -> torch.Tensor:
    """float64 values of e4m3 bytes [N, K] times per-block scales [ceil(N/b), ceil(K/b)] (floats)."""
    table = torch.tensor([e4m3(b) for b in range(256)], dtype=torch.float64)
    values = table[weight_bytes.long()]
    n, k = values.shape
    return values * scale.double()[torch.arange(n) // block][:, torch.arange(k) // block]


def fp4_weight(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float64 values of packed e2m1 [R, C/2] (element 2k in the low nibble) times [R, C/32] scales."""
    table = torch.tensor([e2m1(c) for c in range(16)], dtype=torch.float64)
    b = packed.view(torch.uint8).long()
    codes = torch.stack((b & 0xF, b >> 4), dim=-1).flatten(-2)
    return table[codes] * scale.double().repeat_interleave(32, dim=-1)


def ue8m0_values(scale_bytes: torch.Tensor) -> torch.Tensor:
    """float64 values of ue8m0 bytes, any shape."""
    table = torch.tensor([ue8m0(b) for b in range(256)], dtype=torch.float64)
    return table[scale_bytes.long()]
