"""FP8 block-scaled GEMM in Triton: activations [M, K] (bf16 or fp32) times an e4m3 weight [N, K]
with one scale per 128 x 128 block, dequantised inside the kernel. Same math as `ref.py`.

Each program owns a BLOCK_M x BLOCK_N output tile and walks K in tiles of BLOCK_K, a divisor of
the scale block, so every weight tile lies inside one scale block along K: its scale is one value
per output column. bf16 activations multiply through `tl.dot_scaled` with the e4m3 tile as the
MX operand and the block's ue8m0 byte repeated over the tile's 32-wide groups (the compiler
upcasts with the hardware e4m3 conversion and runs the bf16 MMA; the power-of-two scale is exact);
float scales instead scale the upcast tile in fp32 and round it to bf16. fp32 activations decode
the e4m3 fields exactly (`quant.triton._e4m3_value`), scale in fp32 (the reference's dequantised
weight, bit for bit) and use fp32 products (`input_precision="ieee"`).

Decode-sized calls (few rows, weights of a few MiB) are memory-bound and have too few output tiles
to fill the GPU, so K is split across programs (`split_k`): each writes an fp32 partial into a
workspace that one torch sum reduces in a fixed order (deterministic, unlike atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepfim.kernels.quant.triton import _cast_rne, _e4m3_value, _scale_arg, _scale_value
from deepfim.kernels.triton_checks import FLOAT_DTYPES, check_tensor, interpreting

ACT_DTYPES = (torch.bfloat16, torch.float32)

GROUP_M = tl.constexpr(8)  # output-tile rows that share weight tiles while they are in L2 (Triton's grouped order)


@triton.jit
def _fp8_gemm_kernel(
    x_ptr, w_ptr, s_ptr, out_ptr, M, N, K, stride_xm, stride_sn, block, k_tiles_per_split,
    SCALE_KIND: tl.constexpr, FP32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # grouped tile order: GROUP_M row-tiles walk the N tiles together (weight tiles reused from L2)
    pid = tl.program_id(0)
    tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    first_m = (pid // (GROUP_M * tiles_n)) * GROUP_M
    group = tl.minimum(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % (GROUP_M * tiles_n)) % group
    pid_n = (pid % (GROUP_M * tiles_n)) // group
    split = tl.program_id(1)

    offs_m = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    scale_row = (offs_n // block) * stride_sn
    kt_first = split * k_tiles_per_split
    kt_last = tl.minimum(kt_first + k_tiles_per_split, tl.cdiv(K, BLOCK_K))
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for kt in range(kt_first, kt_last):
        offs_k = kt * BLOCK_K + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :],
                    other=0.0)  # fmt: skip
        w = tl.load(w_ptr + offs_n[:, None] * K + offs_k[None, :], mask=mask_n[:, None] & mask_k[None, :], other=0)
        s = tl.load(s_ptr + scale_row + (kt * BLOCK_K) // block, mask=mask_n, other=0)
        if FP32:  # exact e4m3 fields times the scale: the reference's fp32 dequantised weight
            w = _e4m3_value(w.to(tl.int32)) * _scale_value(s, SCALE_KIND)[:, None]
            acc = tl.dot(x, tl.trans(w), acc, input_precision="ieee")
        elif SCALE_KIND == 2:  # float scales: the scaled weight rounded to bf16
            w = (w.to(tl.float8e4nv, bitcast=True).to(tl.float32) * s[:, None].to(tl.float32)).to(tl.bfloat16)
            acc = tl.dot_scaled(x, None, "bf16", tl.trans(w), None, "bf16", acc)
        else:  # ue8m0 bytes: the block's scale repeated for each 32-wide MX group of the tile
            groups = tl.broadcast_to(s[:, None], (BLOCK_N, BLOCK_K // 32))
            acc = tl.dot_scaled(x, None, "bf16", tl.trans(w), groups, "e4m3", acc)
    out = out_ptr + split.to(tl.int64) * M * N + offs_m[:, None] * N + offs_n[None, :]
    tl.store(out, _cast_rne(acc, out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # the interpreter: small, so that the split-K path is exercised on test sizes


def _config(m: int, n: int, k: int, block: int, fp32: bool, device: torch.device) -> dict:
    """Tile sizes by shape (untuned starting points; decode: narrow N tiles and split K). The fp32
    path multiplies with FMAs, whose operands live in registers: small tiles, or they spill (not
    in the interpreter, where small tiles only cost time)."""
    if fp32 and not interpreting():
        block_m, block_n, block_k, warps, stages = 16 if m <= 16 else 32, 32, 32, 4, 2
    elif m <= 16:
        block_m, block_n, block_k, warps, stages = 16, 64, 128, 4, 4
    elif m <= 64:
        block_m, block_n, block_k, warps, stages = 32 if m <= 32 else 64, 128, 128, 4, 3
    else:
        block_m, block_n, block_k, warps, stages = 128, 128, 128, 8, 3
    block_k = next(b for b in (block_k, 64, 32) if block % b == 0)  # a tile never straddles two scale blocks
    k_tiles = triton.cdiv(k, block_k)
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
    split = max(1, min(2 * _sm_count(device) // tiles, k_tiles // 2, 16)) if m <= 64 else 1
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "split_k": split, "num_warps": warps,
            "num_stages": stages}  # fmt: skip


def fp8_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor,
    block: int = 128,
    out_dtype: torch.dtype | None = None,
    split_k: int | None = None,
    config: dict | None = None,
) -> torch.Tensor:
    """Drop-in for `ref.fp8_linear`: x [..., K] times e4m3 weight [N, K] (block scales) -> [..., N].

    Args:
        scale: [ceil(N/block), ceil(K/block)]: float8_e8m0fnu, uint8 exponent bytes or floats.
        block: scale block edge (V4: 128); a multiple of 32 (the MX group of `tl.dot_scaled`).
        split_k: programs along K (default: by shape); their fp32 partials are summed in order.
        config: overrides of the chosen tiles (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages), for
            tuning and tests; BLOCK_K must divide block.
    """
    check_tensor("x", x, dtypes=ACT_DTYPES)
    check_tensor("weight", weight, ndim=2, dtypes=(torch.float8_e4m3fn,), device=x.device, contiguous=True)
    check_tensor("scale", scale, ndim=2, device=x.device)
    n, k = weight.shape
    if x.dim() == 0 or x.shape[-1] != k:
        raise ValueError(f"x shape {tuple(x.shape)} does not match FP8 weight shape {(n, k)} (need x [..., {k}])")
    if block < 32 or block % 32:
        raise ValueError(f"block must be a positive multiple of 32, got {block}")
    expected = (triton.cdiv(n, block), triton.cdiv(k, block))
    if tuple(scale.shape) != expected:
        raise ValueError(f"FP8 scale shape {tuple(scale.shape)} does not match weight {(n, k)} (expected {expected})")
    out_dtype = out_dtype or x.dtype
    if out_dtype not in FLOAT_DTYPES:
        raise ValueError(f"out_dtype {out_dtype} not supported (expected one of {[str(d) for d in FLOAT_DTYPES]})")
    s, kind = _scale_arg(scale)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    cfg = _config(m, n, k, block, x.dtype == torch.float32, x.device) | (config or {})
    if block % cfg["BLOCK_K"] or cfg["BLOCK_K"] % 32:
        raise ValueError(f"BLOCK_K={cfg['BLOCK_K']} must be a multiple of 32 dividing block={block}")
    k_tiles = triton.cdiv(k, cfg["BLOCK_K"])
    split = max(1, min(split_k or cfg["split_k"], k_tiles))
    if m == 0 or n == 0 or k == 0:
        return torch.zeros(*lead, n, dtype=out_dtype, device=x.device)
    out = torch.empty((split, m, n) if split > 1 else (m, n), dtype=torch.float32 if split > 1 else out_dtype,
                      device=x.device)  # fmt: skip
    grid = (triton.cdiv(m, cfg["BLOCK_M"]) * triton.cdiv(n, cfg["BLOCK_N"]), split)
    _fp8_gemm_kernel[grid](
        x2, weight.view(torch.uint8), s, out, m, n, k, x2.stride(0), s.stride(0), block, triton.cdiv(k_tiles, split),
        SCALE_KIND=kind, FP32=x.dtype == torch.float32,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        num_warps=cfg["num_warps"], num_stages=1 if interpreting() else cfg["num_stages"],
    )  # fmt: skip
    if split > 1:
        out = out.sum(0).to(out_dtype)
    return out.view(*lead, n)
