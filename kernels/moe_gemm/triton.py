"""Grouped MoE GEMM in Triton: the routed experts of a V4 MoE layer over FP4 (or bf16 / fp32) weights.

Same math as `ref.experts_forward` (see README.md). Four steps, none of which reads a count back
on the host (so the whole layer can sit in a CUDA graph):

1. `permute.permute`: (token, expert) pairs laid out by expert in blocks of BLOCK_M rows;
2. `_moe_up_kernel`: per row block (one expert) and BLOCK_N columns of I, gathers the tokens' x
   rows, multiplies by W1 and W3 (two accumulators), applies the clamped SwiGLU and the pair's
   routing weight -> h, in the rows' padded order;
3. `_moe_down_kernel`: h times W2 of the block's expert -> y, stored at the pair's own row
   (token * K + j), which is the un-permutation;
4. `_moe_combine_kernel`: out[t] = sum_j y[t * K + j], in fp32, in a fixed order.

FP4 weights are dequantised inside the GEMMs: with bf16 activations through `tl.dot_scaled`
(e2m1 operand, ue8m0 scale per 32 along K: the MX format these checkpoints use), with fp32
activations (or float scales) by decoding the e2m1 fields and scales exactly and multiplying in
fp32 (`input_precision="ieee"`). Dense bf16 / fp32 experts take the same paths without decoding.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepfim.kernels.moe_gemm import permute
from deepfim.kernels.moe_gemm.ref import ExpertWeights
from deepfim.kernels.quant.triton import SCALE_FLOAT, _cast_rne, _e2m1_value, _scale_arg, _scale_value
from deepfim.kernels.triton_checks import check_tensor, interpreting

ACT_DTYPES = (torch.float32, torch.bfloat16)


@triton.jit
def _dot_in(a, w, acc, FP32: tl.constexpr):
    """acc + a @ w^T, w [BLOCK_N, BLOCK_K] taken in a's precision (fp32: exact products; else bf16 MMA)."""
    if FP32:
        acc = tl.dot(a, tl.trans(w.to(tl.float32)), acc, input_precision="ieee")
    else:
        acc = tl.dot_scaled(a, None, "bf16", tl.trans(w.to(tl.bfloat16)), None, "bf16", acc)
    return acc


@triton.jit
def _fp4_values(packed, s, SCALE_KIND: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """[BLOCK_N, BLOCK_K/2] packed e2m1 bytes with [BLOCK_N, BLOCK_K/32] scales -> fp32 [BLOCK_N, BLOCK_K]."""
    b = packed.to(tl.int32)
    code = tl.reshape(tl.join(b & 0xF, b >> 4), (BLOCK_N, BLOCK_K))  # low nibble = element 2k
    mag = _e2m1_value(code & 7)
    scale = tl.broadcast_to(_scale_value(s, SCALE_KIND)[:, :, None], (BLOCK_N, BLOCK_K // 32, 32))
    return tl.where((code & 8) != 0, -mag, mag) * tl.reshape(scale, (BLOCK_N, BLOCK_K))


@triton.jit
def _expert_dot(
    a, acc, w_ptr, s_ptr, offs_n, mask_n, k0, K,
    W_FP4: tl.constexpr, SCALE_KIND: tl.constexpr, FP32: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """acc + a @ W[offs_n, k0:k0+BLOCK_K]^T for one expert's W [N, K] (dense or packed FP4 + scales)."""
    if W_FP4:
        offs_p = k0 // 2 + tl.arange(0, BLOCK_K // 2)
        packed = tl.load(w_ptr + offs_n[:, None] * (K // 2) + offs_p[None, :],
                         mask=mask_n[:, None] & (offs_p < K // 2)[None, :], other=0)  # fmt: skip
        offs_g = k0 // 32 + tl.arange(0, BLOCK_K // 32)
        s = tl.load(s_ptr + offs_n[:, None] * (K // 32) + offs_g[None, :],
                    mask=mask_n[:, None] & (offs_g < K // 32)[None, :], other=127)  # fmt: skip
        if FP32 or SCALE_KIND == 2:
            acc = _dot_in(a, _fp4_values(packed, s, SCALE_KIND, BLOCK_N, BLOCK_K), acc, FP32)
        else:
            acc = tl.dot_scaled(a, None, "bf16", tl.trans(packed), s, "e2m1", acc)
    else:
        offs_k = k0 + tl.arange(0, BLOCK_K)
        w = tl.load(w_ptr + offs_n[:, None] * K + offs_k[None, :], mask=mask_n[:, None] & (offs_k < K)[None, :],
                    other=0.0)  # fmt: skip
        acc = _dot_in(a, w, acc, FP32)
    return acc


@triton.jit
def _expert_of_block(block_end_ptr, pid_m, E, E_PAD: tl.constexpr):
    """The expert whose rows contain row block pid_m (E: past the last expert)."""
    offs_e = tl.arange(0, E_PAD)
    ends = tl.load(block_end_ptr + offs_e, mask=offs_e < E, other=2**30)
    return tl.sum((ends <= pid_m).to(tl.int32), axis=0)


@triton.jit
def _row_block(rows_ptr, block_end_ptr, pid_m, E, E_PAD: tl.constexpr, BLOCK_M: tl.constexpr):
    """Expert of row block pid_m (E: past the last one; its rows are then not meaningful), the
    block's row offsets, their pair ids (-1: padding) and which rows are pairs."""
    offs_m = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(rows_ptr + offs_m)
    return _expert_of_block(block_end_ptr, pid_m, E, E_PAD), offs_m, pair, pair >= 0


@triton.jit
def _out_cols(pid_n, n, BLOCK_N: tl.constexpr):
    offs_n = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    return offs_n, offs_n < n


@triton.jit
def _expert_offsets(e, rows, cols, W_FP4: tl.constexpr):
    """Element offsets of expert e's [rows, cols] matrix and of its [rows, cols / 32] scales."""
    return e.to(tl.int64) * rows * (cols // 2 if W_FP4 else cols), e.to(tl.int64) * rows * (cols // 32)


@triton.jit
def _moe_up_kernel(
    x_ptr, w1_ptr, w3_ptr, s1_ptr, s3_ptr, rows_ptr, block_end_ptr, rw_ptr, h_ptr,
    D, I, TOPK, E, stride_xm, limit,
    W_FP4: tl.constexpr, SCALE_KIND: tl.constexpr, FP32: tl.constexpr, HAS_LIMIT: tl.constexpr,
    E_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    e, offs_m, pair, valid = _row_block(rows_ptr, block_end_ptr, tl.program_id(0), E, E_PAD, BLOCK_M)
    if e >= E:
        return
    token = tl.where(valid, pair // TOPK, 0).to(tl.int64)
    offs_n, mask_n = _out_cols(tl.program_id(1), I, BLOCK_N)
    w_off, s_off = _expert_offsets(e, I, D, W_FP4)
    gate = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    up = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, D, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(x_ptr + token[:, None] * stride_xm + offs_k[None, :], mask=valid[:, None] & (offs_k < D)[None, :],
                    other=0.0)  # fmt: skip
        gate = _expert_dot(a, gate, w1_ptr + w_off, s1_ptr + s_off, offs_n, mask_n, k0, D,
                           W_FP4, SCALE_KIND, FP32, BLOCK_N, BLOCK_K)  # fmt: skip
        up = _expert_dot(a, up, w3_ptr + w_off, s3_ptr + s_off, offs_n, mask_n, k0, D,
                         W_FP4, SCALE_KIND, FP32, BLOCK_N, BLOCK_K)  # fmt: skip
    if HAS_LIMIT:
        gate = tl.minimum(gate, limit)
        up = tl.minimum(tl.maximum(up, -limit), limit)
    weight = tl.load(rw_ptr + pair, mask=valid, other=0.0)
    h = gate * tl.sigmoid(gate) * up * weight[:, None]
    tl.store(h_ptr + offs_m[:, None] * I + offs_n[None, :], _cast_rne(h, h_ptr.dtype.element_ty),
             mask=valid[:, None] & mask_n[None, :])  # fmt: skip


@triton.jit
def _moe_down_kernel(
    h_ptr, w2_ptr, s2_ptr, rows_ptr, block_end_ptr, y_ptr, D, I, E,
    W_FP4: tl.constexpr, SCALE_KIND: tl.constexpr, FP32: tl.constexpr,
    E_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    e, offs_m, pair, valid = _row_block(rows_ptr, block_end_ptr, tl.program_id(0), E, E_PAD, BLOCK_M)
    if e >= E:
        return
    offs_n, mask_n = _out_cols(tl.program_id(1), D, BLOCK_N)
    w_off, s_off = _expert_offsets(e, D, I, W_FP4)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, I, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(h_ptr + offs_m[:, None] * I + offs_k[None, :], mask=valid[:, None] & (offs_k < I)[None, :],
                    other=0.0)  # fmt: skip
        acc = _expert_dot(a, acc, w2_ptr + w_off, s2_ptr + s_off, offs_n, mask_n, k0, I,
                          W_FP4, SCALE_KIND, FP32, BLOCK_N, BLOCK_K)  # fmt: skip
    dst = y_ptr + tl.where(valid, pair, 0).to(tl.int64)[:, None] * D + offs_n[None, :]
    tl.store(dst, _cast_rne(acc, y_ptr.dtype.element_ty), mask=valid[:, None] & mask_n[None, :])


@triton.jit
def _moe_combine_kernel(y_ptr, out_ptr, N, D, TOPK, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    offs_t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
    msk = (offs_t < N)[:, None] & (offs_d < D)[None, :]
    acc = tl.zeros([BLOCK_T, BLOCK_D], tl.float32)
    for j in range(0, TOPK):
        acc += tl.load(y_ptr + (offs_t[:, None] * TOPK + j) * D + offs_d[None, :], mask=msk, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs_t[:, None] * D + offs_d[None, :], _cast_rne(acc, out_ptr.dtype.element_ty), mask=msk)


def _config(pairs: int, n_experts: int, fp32: bool) -> dict:
    """Tiles by the mean rows per used expert (untuned starting points): decode 16-row blocks. The fp32
    path multiplies with FMAs, whose operands live in registers: small tiles, or they spill (not in
    the interpreter, where small tiles only cost time)."""
    mean_rows = pairs / max(1, min(n_experts, pairs))
    if fp32 and not interpreting():
        return {"BLOCK_M": 16 if mean_rows <= 16 else 32, "BLOCK_N": 32, "BLOCK_K": 32, "num_warps": 4,
                "num_stages": 2}  # fmt: skip
    if mean_rows <= 16:
        return {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 4}
    if mean_rows <= 48:
        return {"BLOCK_M": 32, "BLOCK_N": 128, "BLOCK_K": 128, "num_warps": 4, "num_stages": 3}
    return {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128, "num_warps": 8, "num_stages": 3}


def _weights_args(w: torch.Tensor, s: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    if s is None:
        return w, w, SCALE_FLOAT  # the scale pointer is not read for dense experts
    scale, kind = _scale_arg(s)
    return w.view(torch.uint8), scale, kind


def check_experts(x: torch.Tensor, experts: ExpertWeights) -> tuple[int, int, int]:
    """(E, I, D) after checking dtypes, devices and contiguity; ValueError naming the bad tensor."""
    e, inter, d = experts.shape()
    check_tensor("x", x, ndim=2, dtypes=ACT_DTYPES)
    if x.shape[1] != d:
        raise ValueError(f"x shape {tuple(x.shape)} does not match experts with D={d}")
    packed = (torch.int8, torch.uint8) if experts.fp4 else ACT_DTYPES
    for name in ("w1", "w2", "w3", "s1", "s2", "s3"):
        t = getattr(experts, name)
        if t is not None:
            check_tensor(name, t, dtypes=packed if name[0] == "w" else None, device=x.device, contiguous=True)
    return e, inter, d


def experts_up(
    x: torch.Tensor,
    weights: torch.Tensor,
    layout: permute.Permutation,
    experts: ExpertWeights,
    limit: float,
    cfg: dict,
) -> torch.Tensor:
    """h [n_blocks * BLOCK_M, I] in x's dtype: routing weight * swiglu(W1 x, W3 x) per pair row."""
    e, inter, d = experts.shape()
    h = torch.empty(layout.n_blocks * cfg["BLOCK_M"], inter, dtype=x.dtype, device=x.device)
    w1, s1, kind = _weights_args(experts.w1, experts.s1)
    w3, s3, _ = _weights_args(experts.w3, experts.s3)
    _moe_up_kernel[(layout.n_blocks, triton.cdiv(inter, cfg["BLOCK_N"]))](
        x, w1, w3, s1, s3, layout.rows, layout.block_end, weights.reshape(-1).float().contiguous(), h,
        d, inter, layout.topk, e, x.stride(0), float(limit),
        W_FP4=experts.fp4, SCALE_KIND=kind, FP32=x.dtype == torch.float32, HAS_LIMIT=limit > 0,
        E_PAD=triton.next_power_of_2(e), **_launch(cfg),
    )  # fmt: skip
    return h


def experts_down(h: torch.Tensor, layout: permute.Permutation, experts: ExpertWeights, cfg: dict) -> torch.Tensor:
    """y [N * K, D] in h's dtype: W2 h of each pair, stored at the pair's own row (token * K + j)."""
    e, inter, d = experts.shape()
    y = torch.empty(layout.pairs, d, dtype=h.dtype, device=h.device)
    w2, s2, kind = _weights_args(experts.w2, experts.s2)
    _moe_down_kernel[(layout.n_blocks, triton.cdiv(d, cfg["BLOCK_N"]))](
        h, w2, s2, layout.rows, layout.block_end, y, d, inter, e,
        W_FP4=experts.fp4, SCALE_KIND=kind, FP32=h.dtype == torch.float32, E_PAD=triton.next_power_of_2(e),
        **_launch(cfg),
    )  # fmt: skip
    return y


def combine(y: torch.Tensor, n_tokens: int, topk: int) -> torch.Tensor:
    """out [N, D] = sum over j of y[t * K + j], accumulated in fp32 in j order, in y's dtype."""
    d = y.shape[1]
    out = torch.empty(n_tokens, d, dtype=y.dtype, device=y.device)
    block_t, block_d = 4, 256
    _moe_combine_kernel[(triton.cdiv(n_tokens, block_t), triton.cdiv(d, block_d))](
        y, out, n_tokens, d, topk, BLOCK_T=block_t, BLOCK_D=block_d
    )
    return out


def experts_forward(
    x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor, experts: ExpertWeights, limit: float, config=None
) -> torch.Tensor:
    """Drop-in for `ref.experts_forward`: x [N, D] (bf16 or fp32), routing weights and ids [N, K] -> [N, D].

    Args:
        config: overrides of the chosen tiles (BLOCK_M, BLOCK_N, BLOCK_K: a multiple of 32, num_warps,
            num_stages), for tuning and tests.
    """
    e, _, d = check_experts(x, experts)
    check_tensor("weights", weights, ndim=2, device=x.device)
    check_tensor("idx", idx, ndim=2, dtypes=(torch.int32, torch.int64), device=x.device)
    if weights.shape != idx.shape or idx.shape[0] != x.shape[0]:
        raise ValueError(f"weights {tuple(weights.shape)} and idx {tuple(idx.shape)} must both be [N, K] "
                         f"with N = {x.shape[0]} tokens of x")  # fmt: skip
    n, k = idx.shape
    if n * k == 0 or d == 0:
        return torch.zeros_like(x)
    permute.check_expert_ids(idx, e)
    cfg = _config(n * k, e, x.dtype == torch.float32) | (config or {})
    if cfg["BLOCK_K"] % 32 or cfg["BLOCK_M"] < 16:
        raise ValueError(f"BLOCK_K={cfg['BLOCK_K']} must be a multiple of 32 and BLOCK_M={cfg['BLOCK_M']} >= 16")
    layout = permute.permute(idx, e, cfg["BLOCK_M"])
    h = experts_up(x, weights, layout, experts, limit, cfg)
    return combine(experts_down(h, layout, experts, cfg), n, k)


def _launch(cfg: dict) -> dict:
    out = {k: cfg[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps")}
    out["num_stages"] = 1 if interpreting() else cfg["num_stages"]
    return out
