"""FP8 (e4m3) and FP4 (e2m1) quantisation kernels in Triton: activation round trips, FP4 packing,
and FP8-block / FP4-packed weight dequantisation. Same formats as `ref.py` (see README.md).

Rounding is done with integer and exact fp32 arithmetic rather than Triton's fp8 casts:
power-of-two scales come from the exponent bits (exact ceil(log2)), e4m3 values from a
round-half-even on the fp32 value, e2m1 values from the midpoint table. That keeps the kernels
bit-exact on every backend (the CPU interpreter's fp32 -> fp8 cast mis-rounds values that
carry into the next binade, and its fp8 -> fp32 cast reads 0x7F as 480, not NaN).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepfim.kernels.triton_checks import FLOAT_DTYPES, block_size, check_tensor

# how a ue8m0 scale tensor reaches the kernel: e8m0 exponent bytes (255 = NaN), uint8 exponent
# bytes (as ref: 2^(e - 127), so 255 = inf), or plain floats
SCALE_E8M0, SCALE_UINT8, SCALE_FLOAT = 0, 1, 2


@triton.jit
def _exp2i(e):
    """2^e for int32 e in [-126, 127], built from the exponent bits (exact)."""
    return ((e + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _ceil_log2(y):
    """ceil(log2(y)) for positive normal fp32 y, exactly (from the bits, no log2 rounding)."""
    bits = y.to(tl.int32, bitcast=True)
    return ((bits >> 23) & 0xFF) - 127 + ((bits & 0x7FFFFF) != 0).to(tl.int32)


@triton.jit
def _block_scale_exp(x, QMAX: tl.constexpr):
    """Exponent of the power-of-two scale 2^ceil(log2(max(amax, 1e-4) / QMAX)) per row of x."""
    amax = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-4)
    return _ceil_log2(tl.div_rn(amax, QMAX))


@triton.jit
def _round_e4m3(v):
    """Nearest e4m3 value (ties to even), saturating at +-448."""
    a = tl.abs(v)
    ex = ((a.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
    qe = tl.maximum(ex, -6) - 3  # spacing of e4m3 values around a (subnormal below 2^-6)
    # a * 2^-qe < 16 is exact; adding and removing 2^23 rounds it to an integer, half to even
    r = ((a * _exp2i(-qe) + 8388608.0) - 8388608.0) * _exp2i(qe)
    r = tl.minimum(r, 448.0)
    return tl.where(v < 0, -r, r)


@triton.jit
def _e2m1_code(v):
    """Magnitude code 0..7 of the nearest e2m1 value (ties to the even code), saturating at 6."""
    a = tl.minimum(tl.abs(v), 6.0)
    code = (a > 0.25).to(tl.int32) + (a >= 0.75).to(tl.int32) + (a > 1.25).to(tl.int32)
    code += (a >= 1.75).to(tl.int32) + (a > 2.5).to(tl.int32) + (a >= 3.5).to(tl.int32) + (a > 5.0).to(tl.int32)
    return code


@triton.jit
def _e2m1_value(code):
    """Magnitude of code 0..7: [0, .5, 1, 1.5, 2, 3, 4, 6]."""
    e = code >> 1
    half = (code & 1).to(tl.float32) * 0.5
    return tl.where(e == 0, half, (1.0 + half) * _exp2i(e - 1))


@triton.jit
def _e4m3_value(bits):
    """fp32 value of e4m3fn bytes (given as int32 0..255); 0x7F / 0xFF are NaN."""
    e = (bits >> 3) & 0xF
    mnt = bits & 7
    mag = tl.where(e == 0, mnt.to(tl.float32) * 0.001953125, (8 + mnt).to(tl.float32) * _exp2i(e - 10))
    mag = tl.where((e == 15) & (mnt == 7), float("nan"), mag)
    return tl.where(bits >= 128, -mag, mag)


@triton.jit
def _scale_value(s, SCALE_KIND: tl.constexpr):
    """ue8m0 scale from its exponent byte, or the float itself."""
    if SCALE_KIND == 2:
        return s.to(tl.float32)
    s = s.to(tl.int32)
    v = tl.where(s == 0, 5.877471754111438e-39, (s << 23).to(tl.float32, bitcast=True))  # 2^-127 is subnormal
    if SCALE_KIND == 0:
        v = tl.where(s == 255, float("nan"), v)
    return v


@triton.jit
def _cast_rne(x, DTYPE: tl.constexpr):
    """fp32 x in DTYPE; bf16 rounds to nearest even from the bits, so the CPU interpreter (whose own
    fp32 -> bf16 cast truncates) gives what a GPU's cvt.rn gives. NaN stays NaN."""
    if DTYPE == tl.bfloat16:
        bits = x.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
        return tl.where(x != x, x, bits.to(tl.float32, bitcast=True)).to(tl.bfloat16)
    else:
        return x.to(DTYPE)


@triton.jit
def _quant_round_trip_kernel(
    x_ptr, out_ptr, R, K, block,
    FP4: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    """Fake-quantises one quant block (along the last dim) of BLOCK_R rows."""
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_k = tl.program_id(1).to(tl.int64) * block + tl.arange(0, BLOCK_B)
    msk = (offs_r < R)[:, None] & (tl.arange(0, BLOCK_B) < block)[None, :]
    ptrs = offs_r[:, None] * K + offs_k[None, :]
    x = tl.load(x_ptr + ptrs, mask=msk, other=0.0).to(tl.float32)
    if FP4:
        e = _block_scale_exp(x, 6.0)[:, None]
        v = x * _exp2i(-e)
        mag = _e2m1_value(_e2m1_code(v))
        q = tl.where(v < 0, -mag, mag)
    else:
        e = _block_scale_exp(x, 448.0)[:, None]
        q = _round_e4m3(x * _exp2i(-e))
    tl.store(out_ptr + ptrs, (q * _exp2i(e)).to(out_ptr.dtype.element_ty), mask=msk)


@triton.jit
def _quant_fp4_packed_kernel(
    x_ptr, packed_ptr, scale_ptr, R, K, block,
    BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    """Quantises one 1 x block group of BLOCK_R rows to packed e2m1 codes + a ue8m0 exponent byte."""
    kb = tl.program_id(1).to(tl.int64)
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    mask_r = offs_r < R
    offs_b = tl.arange(0, BLOCK_B)
    x = tl.load(x_ptr + offs_r[:, None] * K + kb * block + offs_b[None, :],
                mask=mask_r[:, None] & (offs_b < block)[None, :], other=0.0).to(tl.float32)  # fmt: skip
    e = _block_scale_exp(x, 6.0)
    v = x * _exp2i(-e)[:, None]
    code = _e2m1_code(v)
    code = code | (((v < 0) & (code != 0)).to(tl.int32) << 3)
    lo, hi = tl.split(tl.reshape(code, (BLOCK_R, BLOCK_B // 2, 2)))  # element 2k in the low nibble
    offs_p = tl.arange(0, BLOCK_B // 2)
    dst = packed_ptr + offs_r[:, None] * (K // 2) + kb * (block // 2) + offs_p[None, :]
    tl.store(dst, (lo | (hi << 4)).to(tl.uint8), mask=mask_r[:, None] & (offs_p < block // 2)[None, :])
    tl.store(scale_ptr + offs_r * (K // block) + kb, (e + 127).to(tl.uint8), mask=mask_r)


@triton.jit
def _dequant_fp8_blocks_kernel(
    w_ptr, scale_ptr, out_ptr, M, K, block, stride_sm,
    SCALE_KIND: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    offs_m = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.program_id(1).to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    msk = (offs_m < M)[:, None] & (offs_k < K)[None, :]
    bits = tl.load(w_ptr + offs_m[:, None] * K + offs_k[None, :], mask=msk, other=0).to(tl.int32)
    s = tl.load(scale_ptr + (offs_m // block)[:, None] * stride_sm + (offs_k // block)[None, :], mask=msk, other=0)
    out = _e4m3_value(bits) * _scale_value(s, SCALE_KIND)
    tl.store(out_ptr + offs_m[:, None] * K + offs_k[None, :], out, mask=msk)


@triton.jit
def _dequant_fp4_packed_kernel(
    packed_ptr, scale_ptr, out_ptr, M, K, block,
    SCALE_KIND: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    offs_m = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_p = tl.program_id(1).to(tl.int64) * (BLOCK_K // 2) + tl.arange(0, BLOCK_K // 2)
    mask_m = offs_m < M
    byte = tl.load(packed_ptr + offs_m[:, None] * (K // 2) + offs_p[None, :],
                   mask=mask_m[:, None] & (offs_p < K // 2)[None, :], other=0).to(tl.int32)  # fmt: skip
    code = tl.reshape(tl.join(byte & 0xF, byte >> 4), (BLOCK_M, BLOCK_K))  # low nibble = element 2k
    offs_k = tl.program_id(1).to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    msk = mask_m[:, None] & (offs_k < K)[None, :]
    mag = _e2m1_value(code & 7)
    s = tl.load(scale_ptr + offs_m[:, None] * (K // block) + (offs_k // block)[None, :], mask=msk, other=0)
    out = tl.where((code & 8) != 0, -mag, mag) * _scale_value(s, SCALE_KIND)
    tl.store(out_ptr + offs_m[:, None] * K + offs_k[None, :], out, mask=msk)


def _check_blocks(name: str, x: torch.Tensor, block: int) -> None:
    if block < 1 or x.dim() == 0 or x.shape[-1] % block:
        raise ValueError(f"{name} last dim must be a positive multiple of block={block}, got shape {tuple(x.shape)}")


def _round_trip(x: torch.Tensor, block: int, fp4: bool) -> torch.Tensor:
    check_tensor("x", x, dtypes=FLOAT_DTYPES, contiguous=True)
    _check_blocks("x", x, block)
    k = x.shape[-1]
    rows = x.numel() // k if k else 0
    out = torch.empty_like(x)
    block_r = 16
    if rows:
        grid = (triton.cdiv(rows, block_r), k // block)
        block_b = block_size(block, lo=2)
        _quant_round_trip_kernel[grid](x, out, rows, k, block, FP4=fp4, BLOCK_R=block_r, BLOCK_B=block_b)
    return out


def fp8_round_trip(x: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Drop-in for `ref.fp8_round_trip` (e4m3, power-of-two scale per block along the last dim)."""
    return _round_trip(x, block, fp4=False)


def fp4_round_trip(x: torch.Tensor, block: int = 32) -> torch.Tensor:
    """Drop-in for `ref.fp4_round_trip` (e2m1, power-of-two scale per block along the last dim)."""
    return _round_trip(x, block, fp4=True)


def quantize_fp4_packed(w: torch.Tensor, block: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for `ref.quantize_fp4_packed`: [M, K] -> (int8 [M, K/2] packed, e8m0 [M, K/block])."""
    check_tensor("w", w, ndim=2, dtypes=FLOAT_DTYPES, contiguous=True)
    _check_blocks("w", w, block)
    if block % 2:
        raise ValueError(f"FP4 packing needs an even block, got block={block}")
    m, k = w.shape
    packed = torch.empty(m, k // 2, dtype=torch.int8, device=w.device)
    scale = torch.empty(m, k // block, dtype=torch.float8_e8m0fnu, device=w.device)
    block_r = 16
    if m and k:
        _quant_fp4_packed_kernel[(triton.cdiv(m, block_r), k // block)](
            w, packed.view(torch.uint8), scale.view(torch.uint8), m, k, block,
            BLOCK_R=block_r, BLOCK_B=block_size(block, lo=2),
        )  # fmt: skip
    return packed, scale


def _scale_arg(scale: torch.Tensor) -> tuple[torch.Tensor, int]:
    if scale.dtype == torch.float8_e8m0fnu:
        return scale.view(torch.uint8), SCALE_E8M0
    if scale.dtype == torch.uint8:
        return scale, SCALE_UINT8
    if scale.dtype in FLOAT_DTYPES:
        return scale, SCALE_FLOAT
    raise ValueError(f"scale dtype {scale.dtype} not supported (float8_e8m0fnu, uint8 exponents or floats)")


def dequant_fp8_blocks(weight: torch.Tensor, scale: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Drop-in for `ref.dequant_fp8_blocks`: [M, K] e4m3 with [ceil(M/b), ceil(K/b)] scales -> fp32."""
    check_tensor("weight", weight, ndim=2, dtypes=(torch.float8_e4m3fn,), contiguous=True)
    check_tensor("scale", scale, ndim=2, device=weight.device)
    m, k = weight.shape
    expected = (triton.cdiv(m, block), triton.cdiv(k, block))
    if tuple(scale.shape) != expected:
        raise ValueError(f"FP8 scale shape {tuple(scale.shape)} does not match weight {(m, k)} (expected {expected})")
    s, kind = _scale_arg(scale)
    out = torch.empty(m, k, dtype=torch.float32, device=weight.device)
    bm, bk = 32, 64
    if m and k:
        _dequant_fp8_blocks_kernel[(triton.cdiv(m, bm), triton.cdiv(k, bk))](
            weight.view(torch.uint8), s, out, m, k, block, s.stride(0), SCALE_KIND=kind, BLOCK_M=bm, BLOCK_K=bk
        )
    return out


def dequant_fp4_packed(packed: torch.Tensor, scale: torch.Tensor, block: int = 32) -> torch.Tensor:
    """Drop-in for `ref.dequant_fp4_packed`: [M, K/2] packed e2m1 with [M, K/block] scales -> fp32 [M, K]."""
    check_tensor("packed", packed, ndim=2, dtypes=(torch.int8, torch.uint8), contiguous=True)
    check_tensor("scale", scale, ndim=2, device=packed.device, contiguous=True)
    m, k = packed.shape[0], packed.shape[1] * 2
    if block < 1 or k % block or tuple(scale.shape) != (m, k // block):
        raise ValueError(
            f"FP4 scale shape {tuple(scale.shape)} does not match weight {(m, k)} (expected {(m, k // max(block, 1))})"
        )
    s, kind = _scale_arg(scale)
    out = torch.empty(m, k, dtype=torch.float32, device=packed.device)
    bm, bk = 32, 64
    if m and k:
        _dequant_fp4_packed_kernel[(triton.cdiv(m, bm), triton.cdiv(k, bk))](
            packed.view(torch.uint8), s, out, m, k, block, SCALE_KIND=kind, BLOCK_M=bm, BLOCK_K=bk
        )
    return out
