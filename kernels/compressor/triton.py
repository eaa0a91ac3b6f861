"""Window pooling of the V4 compressors (HCA and CSA) in Triton.

Same math as `ref.pool_windows` (see README.md): one entry per closed window, a softmax over
the window's slots taken independently per channel weighting the slots' values. One program
owns one (batch, window, channel block) and holds all the window's slots ([SLOTS, BLOCK_D],
SLOTS = m for HCA, 2m for CSA; padded to a power of two with gate -inf).

CSA slot s < m reads the A-half (channels [0, d)) of token s of window w-1, or of `prev` for the
first window, or nothing (gate -inf) when there is no previous window; slot s >= m reads the
B-half (channels [d, 2d)) of token s-m of window w.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepfim.kernels.triton_checks import FLOAT_DTYPES, block_size, check_tensor


@triton.jit
def _pool_windows_fwd_kernel(
    kv_ptr, gate_ptr, prev_kv_ptr, prev_gate_ptr, out_ptr,
    W, m, d,
    stride_b, stride_w, stride_m, gstride_b, gstride_w, gstride_m,
    pstride_b, pstride_m, gpstride_b, gpstride_m,
    OVERLAP: tl.constexpr, HAS_PREV: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    w = tl.program_id(0).to(tl.int64)
    offs_ch = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    b = tl.program_id(2).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_S).to(tl.int64)
    mask_ch = (offs_ch < d)[None, :]
    kv_b = kv_ptr + b * stride_b
    gate_b = gate_ptr + b * gstride_b
    if OVERLAP:
        second = (offs_s >= m) & (offs_s < 2 * m)
        cur = (offs_s - m)[:, None]
        msk = second[:, None] & mask_ch
        kv = tl.load(kv_b + w * stride_w + cur * stride_m + d + offs_ch[None, :], mask=msk, other=0.0)
        g = tl.load(gate_b + w * gstride_w + cur * gstride_m + d + offs_ch[None, :], mask=msk, other=float("-inf"))
        # A-halves of the previous window: in this call's input, or carried over in prev_*
        msk = (offs_s < tl.where(w > 0, m, 0))[:, None] & mask_ch
        kv += tl.load(kv_b + (w - 1) * stride_w + offs_s[:, None] * stride_m + offs_ch[None, :], mask=msk, other=0.0)
        g1 = tl.load(gate_b + (w - 1) * gstride_w + offs_s[:, None] * gstride_m + offs_ch[None, :], mask=msk,
                     other=float("-inf"))  # fmt: skip
        g = tl.where(msk, g1, g)
        if HAS_PREV:
            msk = (offs_s < tl.where(w == 0, m, 0))[:, None] & mask_ch
            kv += tl.load(prev_kv_ptr + b * pstride_b + offs_s[:, None] * pstride_m + offs_ch[None, :], mask=msk,
                          other=0.0)  # fmt: skip
            g0 = tl.load(prev_gate_ptr + b * gpstride_b + offs_s[:, None] * gpstride_m + offs_ch[None, :], mask=msk,
                         other=float("-inf"))  # fmt: skip
            g = tl.where(msk, g0, g)
    else:
        msk = (offs_s < m)[:, None] & mask_ch
        kv = tl.load(kv_b + w * stride_w + offs_s[:, None] * stride_m + offs_ch[None, :], mask=msk, other=0.0)
        g = tl.load(gate_b + w * gstride_w + offs_s[:, None] * gstride_m + offs_ch[None, :], mask=msk,
                    other=float("-inf"))  # fmt: skip
    kv = kv.to(tl.float32)
    g = g.to(tl.float32)
    # every channel has at least one finite slot (the current window), so mx is finite
    mx = tl.max(g, axis=0)
    mx = tl.where(mx == float("-inf"), 0.0, mx)  # only for padded channels
    e = tl.exp(g - mx[None, :])
    z = tl.sum(e, axis=0)
    out = tl.sum(e * kv, axis=0) / tl.where(z == 0.0, 1.0, z)
    tl.store(out_ptr + (b * W + w) * d + offs_ch, out.to(out_ptr.dtype.element_ty), mask=offs_ch < d)


def pool_windows(
    kv: torch.Tensor,
    gate: torch.Tensor,
    prev_kv: torch.Tensor | None,
    prev_gate: torch.Tensor | None,
    overlap: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Drop-in for `ref.pool_windows`: kv, gate [B, W, m, c] -> entries [B, W, d] (+ CSA carry)."""
    check_tensor("kv", kv, ndim=4, dtypes=FLOAT_DTYPES)
    check_tensor("gate", gate, ndim=4, dtypes=FLOAT_DTYPES, device=kv.device)
    if gate.shape != kv.shape:
        raise ValueError(f"gate shape {tuple(gate.shape)} differs from kv {tuple(kv.shape)}")
    b, w, m, c = kv.shape
    if overlap and c % 2:
        raise ValueError(f"CSA pooling needs an even projection width (2d), got c={c}")
    d = c // 2 if overlap else c
    has_prev = overlap and prev_kv is not None
    if has_prev:
        for name, t in (("prev_kv", prev_kv), ("prev_gate", prev_gate)):
            check_tensor(name, t, ndim=3, dtypes=FLOAT_DTYPES, device=kv.device)
            if tuple(t.shape) != (b, m, d):
                raise ValueError(f"{name} shape {tuple(t.shape)} does not match kv (expected {(b, m, d)})")
    pk = prev_kv if has_prev else kv
    pg = prev_gate if has_prev else gate
    out = torch.empty(b, w, d, dtype=torch.promote_types(kv.dtype, gate.dtype), device=kv.device)
    block_d = block_size(d, lo=1, hi=64)
    if w:
        _pool_windows_fwd_kernel[(w, triton.cdiv(d, block_d), b)](
            kv, gate, pk, pg, out, w, m, d,
            kv.stride(0), kv.stride(1), kv.stride(2), gate.stride(0), gate.stride(1), gate.stride(2),
            pk.stride(0), pk.stride(1), pg.stride(0), pg.stride(1),
            OVERLAP=overlap, HAS_PREV=has_prev,
            BLOCK_S=block_size(2 * m if overlap else m, lo=1), BLOCK_D=block_d,
        )  # fmt: skip
    if not overlap:
        return out, None, None
    return out, kv[:, -1, :, :d], gate[:, -1, :, :d]
