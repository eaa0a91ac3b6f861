"""V4 sparse attention with a sink in Triton: gathered shared-KV MQA over window + compressed keys.

Same semantics as `ref.sparse_attention` (see README.md): each query at absolute position p
attends, in one softmax with a per-head sink logit, to
* the raw keys at positions max(raw_start, p - window + 1) .. p, and
* the compressed entries 0 .. visible[t]-1 (HCA, `topk_idx is None`), or the entries listed in
  topk_idx[b, t] (CSA; -1 and out-of-range indices are padding; lists must not repeat an entry).

One program owns one (batch, query, head block). K = V is shared by all heads, so a key tile is
loaded once and multiplied against the whole [BLOCK_H, d] query tile (FlashMLA's sparse decode
layout). For decode (few queries, many keys) the key list is split across programs
(flash-decoding) and a second kernel merges the partial softmaxes and adds the sink.

Forward only; `return_comp_probs` (indexer training) stays on the reference.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from deepfim.kernels.triton_checks import FLOAT_DTYPES, block_size, check_tensor, dot_precision

_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)
# window-only, all visible entries (HCA), index list (CSA)
MODE_WINDOW, MODE_ALL, MODE_TOPK = 0, 1, 2


@triton.jit
def _attend(q, keys, valid, m_i, l_i, acc, qk_scale, DOT_PRECISION: tl.constexpr):
    """One online-softmax step (base 2) of a [BLOCK_H, d] query tile over a [BLOCK_N, d] key tile."""
    s = tl.dot(q, tl.trans(keys), input_precision=DOT_PRECISION) * qk_scale  # [BH, BN]
    s = tl.where(valid[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    # a row that has seen no key yet (and no finite sink) stays at -inf: avoid inf - inf
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(keys.dtype), keys, input_precision=DOT_PRECISION)
    return m_new, l_i, acc


@triton.jit
def _sparse_attn_fwd_kernel(
    q_ptr, kv_ptr, comp_ptr, idx_ptr, vis_ptr, sink_ptr,
    out_ptr, lse_ptr, part_acc_ptr, part_ml_ptr,
    T, H, D, N, C, K, S,
    raw_start, q_start, window, split_len, qk_scale,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_kn,
    stride_cb, stride_cn,
    stride_ib, stride_it,
    MODE: tl.constexpr, SPLIT: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0)
    hb = tl.program_id(1)
    b = (tl.program_id(2) // S).to(tl.int64)
    split = tl.program_id(2) % S
    t64 = t.to(tl.int64)

    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask_h = offs_h < H
    mask_d = offs_d < D
    q_rows = q_ptr + b * stride_qb + t64 * stride_qt + offs_h.to(tl.int64)[:, None] * stride_qh
    q = tl.load(q_rows + offs_d[None, :], mask=mask_h[:, None] & mask_d[None, :], other=0.0)  # [BH, BD]

    # virtual key list: window keys first, then compressed entries; a split owns a slice of it
    pos = q_start + t
    lo_w = tl.maximum(raw_start, pos - window + 1)
    n_win = tl.maximum(pos + 1 - lo_w, 0)
    if MODE == 1:
        n_comp = tl.minimum(tl.load(vis_ptr + t).to(tl.int32), C)
        n_comp = tl.maximum(n_comp, 0)
    elif MODE == 2:
        n_comp = K
    else:
        n_comp = 0
    j0 = split * split_len
    j1 = j0 + split_len

    if SPLIT:
        m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_H], tl.float32)
    else:
        # the sink is a key with logit sink_h and value 0: it starts the running max and sum
        m_i = tl.load(sink_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32) * _LOG2E
        l_i = tl.full([BLOCK_H], 1.0, tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)

    kv_base = kv_ptr + b * stride_kb
    w_begin = lo_w + tl.minimum(j0, n_win)
    w_end = lo_w + tl.minimum(j1, n_win)
    for n0 in range(w_begin, w_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        valid = offs_n < w_end
        rows = tl.where(valid, offs_n - raw_start, 0).to(tl.int64)
        keys = tl.load(kv_base + rows[:, None] * stride_kn + offs_d[None, :],
                       mask=valid[:, None] & mask_d[None, :], other=0.0)  # fmt: skip
        m_i, l_i, acc = _attend(q, keys, valid, m_i, l_i, acc, qk_scale, DOT_PRECISION)

    if MODE != 0:
        comp_base = comp_ptr + b * stride_cb
        c_begin = tl.minimum(tl.maximum(j0 - n_win, 0), n_comp)
        c_end = tl.minimum(tl.maximum(j1 - n_win, 0), n_comp)
        for c0 in range(c_begin, c_end, BLOCK_N):
            offs_c = c0 + tl.arange(0, BLOCK_N)
            in_range = offs_c < c_end
            if MODE == 2:
                idx = tl.load(idx_ptr + b * stride_ib + t64 * stride_it + offs_c, mask=in_range, other=-1)
                valid = in_range & (idx >= 0) & (idx < C)
                rows = tl.where(valid, idx, 0).to(tl.int64)
            else:
                valid = in_range
                rows = tl.where(valid, offs_c, 0).to(tl.int64)
            keys = tl.load(comp_base + rows[:, None] * stride_cn + offs_d[None, :],
                           mask=valid[:, None] & mask_d[None, :], other=0.0)  # fmt: skip
            m_i, l_i, acc = _attend(q, keys, valid, m_i, l_i, acc, qk_scale, DOT_PRECISION)

    if SPLIT:
        part = ((b * T + t64) * S + split) * H + offs_h.to(tl.int64)  # [BH] row of [B, T, S, H]
        tl.store(part_acc_ptr + part[:, None] * D + offs_d[None, :], acc, mask=mask_h[:, None] & mask_d[None, :])
        tl.store(part_ml_ptr + part * 2, m_i, mask=mask_h)
        tl.store(part_ml_ptr + part * 2 + 1, l_i, mask=mask_h)
    else:
        _finish(acc, m_i, l_i, out_ptr, lse_ptr, b, t64, T, H, D, offs_h, offs_d, mask_h, mask_d)


@triton.jit
def _finish(acc, m_i, l_i, out_ptr, lse_ptr, b, t64, T, H, D, offs_h, offs_d, mask_h, mask_d):
    """Normalises and stores one [BLOCK_H, d] output tile and its natural-log LSE.

    A query with no key and a -inf sink (l = 0) gets a zero output and LSE -inf.
    """
    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.log2(tl.where(empty, 1.0, l_i))) * _LN2)
    row = (b * T + t64) * H + offs_h.to(tl.int64)  # [BH] row of [B, T, H]
    tl.store(out_ptr + row[:, None] * D + offs_d[None, :], out.to(out_ptr.dtype.element_ty),
             mask=mask_h[:, None] & mask_d[None, :])  # fmt: skip
    tl.store(lse_ptr + row, lse, mask=mask_h)


@triton.jit
def _sparse_attn_combine_kernel(
    part_acc_ptr, part_ml_ptr, sink_ptr, out_ptr, lse_ptr,
    T, H, D, S,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """Merges the per-split (acc, max, sum) of one (batch, query, head block) and adds the sink."""
    t64 = tl.program_id(0).to(tl.int64)
    hb = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask_h = offs_h < H
    mask_d = offs_d < D
    sink = tl.load(sink_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32) * _LOG2E
    m = sink
    for s in range(0, S):
        part = ((b * T + t64) * S + s) * H + offs_h.to(tl.int64)
        m = tl.maximum(m, tl.load(part_ml_ptr + part * 2, mask=mask_h, other=float("-inf")))
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    l_i = tl.exp2(sink - m_safe)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for s in range(0, S):
        part = ((b * T + t64) * S + s) * H + offs_h.to(tl.int64)
        w = tl.exp2(tl.load(part_ml_ptr + part * 2, mask=mask_h, other=float("-inf")) - m_safe)
        l_i += w * tl.load(part_ml_ptr + part * 2 + 1, mask=mask_h, other=0.0)
        a = tl.load(part_acc_ptr + part[:, None] * D + offs_d[None, :], mask=mask_h[:, None] & mask_d[None, :],
                    other=0.0)  # fmt: skip
        acc += w[:, None] * a
    _finish(acc, m, l_i, out_ptr, lse_ptr, b, t64, T, H, D, offs_h, offs_d, mask_h, mask_d)


def sparse_attention_fwd(
    q: torch.Tensor,
    raw_kv: torch.Tensor,
    raw_start: int,
    q_start: int,
    window: int,
    comp_kv: torch.Tensor | None,
    visible: torch.Tensor | None,
    topk_idx: torch.Tensor | None,
    sink: torch.Tensor,
    scale: float,
    *,
    num_splits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs the kernel; arguments as `ref.sparse_attention`.

    Args:
        num_splits: programs sharing one query's key list (flash-decoding); None picks from the
            device's SM count (1 under the interpreter).
    Returns:
        out [B, T, H, d] in q's dtype, lse [B, T, H] fp32 (natural log of the softmax
        denominator, sink included).
    Raises:
        ValueError: naming the argument whose shape, dtype, device or value does not fit.
    """
    check_tensor("q", q, ndim=4, dtypes=FLOAT_DTYPES)
    b, t, h, d = q.shape
    dev = q.device
    check_tensor("raw_kv", raw_kv, ndim=3, dtypes=(q.dtype,), device=dev)
    if raw_kv.shape[0] != b or raw_kv.shape[2] != d:
        raise ValueError(f"raw_kv shape {tuple(raw_kv.shape)} does not match q {tuple(q.shape)} (want [{b}, N, {d}])")
    n = raw_kv.shape[1]
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    if raw_start > q_start or raw_start + n < q_start + t:
        raise ValueError(
            f"raw_kv covers positions [{raw_start}, {raw_start + n}) but queries sit at [{q_start}, {q_start + t})"
        )
    check_tensor("sink", sink, ndim=1, dtypes=FLOAT_DTYPES, device=dev)
    if sink.shape[0] != h:
        raise ValueError(f"sink has {sink.shape[0]} heads, q has {h}")
    mode, c, k = MODE_WINDOW, 0, 0
    comp, idx, vis = raw_kv, raw_kv, raw_kv  # dummies for unused pointer args
    if comp_kv is not None and comp_kv.shape[1] > 0:
        check_tensor("comp_kv", comp_kv, ndim=3, dtypes=(q.dtype,), device=dev)
        if comp_kv.shape[0] != b or comp_kv.shape[2] != d:
            raise ValueError(f"comp_kv shape {tuple(comp_kv.shape)} does not match q (expected [{b}, C, {d}])")
        comp, c = comp_kv, comp_kv.shape[1]
        if topk_idx is not None:
            check_tensor("topk_idx", topk_idx, ndim=3, dtypes=(torch.int32, torch.int64), device=dev)
            if topk_idx.shape[:2] != (b, t):
                raise ValueError(f"topk_idx shape {tuple(topk_idx.shape)} does not match q (expected [{b}, {t}, K])")
            mode, idx, k = MODE_TOPK, topk_idx, topk_idx.shape[2]
        else:
            if visible is None:
                raise ValueError("visible is required for all-visible (HCA) attention (topk_idx is None)")
            check_tensor("visible", visible, ndim=1, dtypes=(torch.int32, torch.int64), device=dev, contiguous=True)
            if visible.shape[0] != t:
                raise ValueError(f"visible has {visible.shape[0]} entries for {t} queries")
            mode, vis = MODE_ALL, visible
    if mode == MODE_TOPK and k == 0:
        mode = MODE_WINDOW

    block_h, block_n, block_d, num_warps = _tiles(h, d, q.dtype)
    n_hb = triton.cdiv(h, block_h)
    max_keys = min(window, n) + (c if mode == MODE_ALL else k)
    splits = num_splits if num_splits is not None else _pick_splits(dev, b * t * n_hb, max_keys)
    if splits < 1:
        raise ValueError(f"num_splits must be >= 1, got {splits}")
    split_len = triton.cdiv(triton.cdiv(max(max_keys, 1), splits), block_n) * block_n

    out = torch.empty(b, t, h, d, dtype=q.dtype, device=dev)
    lse = torch.empty(b, t, h, dtype=torch.float32, device=dev)
    if splits > 1:
        part_acc = torch.empty(b, t, splits, h, d, dtype=torch.float32, device=dev)
        part_ml = torch.empty(b, t, splits, h, 2, dtype=torch.float32, device=dev)
    else:
        part_acc = part_ml = lse  # unused
    grid = (t, n_hb, b * splits)
    _sparse_attn_fwd_kernel[grid](
        q, raw_kv, comp, idx, vis, sink, out, lse, part_acc, part_ml,
        t, h, d, n, c, k, splits,
        raw_start, q_start, window, split_len, scale * math.log2(math.e),
        q.stride(0), q.stride(1), q.stride(2),
        raw_kv.stride(0), raw_kv.stride(1),
        comp.stride(0), comp.stride(1),
        idx.stride(0), idx.stride(1),
        MODE=mode, SPLIT=splits > 1,
        BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d,
        DOT_PRECISION=dot_precision(q.dtype), num_warps=num_warps,
    )  # fmt: skip
    if splits > 1:
        _sparse_attn_combine_kernel[(t, n_hb, b)](
            part_acc, part_ml, sink, out, lse, t, h, d, splits,
            BLOCK_H=block_h, BLOCK_D=block_d, num_warps=num_warps,
        )  # fmt: skip
    return out, lse


def _tiles(h: int, d: int, dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(BLOCK_H, BLOCK_N, BLOCK_D, num_warps). Untimed; chosen so that V4's d = 512 compiles for
    sm_90 without register spills (bf16: 32 heads x 16 keys; fp32 operands need 16 heads)."""
    block_d = block_size(d)
    if block_d >= 256:
        return block_size(h, hi=16 if dtype == torch.float32 else 32), 16, block_d, 8
    block_h = block_size(h, hi=64)
    return block_h, 32, block_d, 4 if block_h * block_d <= (1024 if dtype == torch.float32 else 8192) else 8


def _pick_splits(dev: torch.device, programs: int, max_keys: int) -> int:
    """Enough splits to give every SM about two programs, each with at least 128 keys."""
    if dev.type != "cuda" or programs == 0:
        return 1
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    return max(1, min(triton.cdiv(2 * sms, programs), max_keys // 128))


def sparse_attention(
    q: torch.Tensor,
    raw_kv: torch.Tensor,
    raw_start: int,
    q_start: int,
    window: int,
    comp_kv: torch.Tensor | None,
    visible: torch.Tensor | None,
    topk_idx: torch.Tensor | None,
    sink: torch.Tensor,
    scale: float,
    return_comp_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop-in for `ref.sparse_attention` (same arguments and results) on the Triton kernel."""
    if return_comp_probs:
        raise ValueError("return_comp_probs is only computed by ref.sparse_attention (indexer training)")
    out, _ = sparse_attention_fwd(q, raw_kv, raw_start, q_start, window, comp_kv, visible, topk_idx, sink, scale)
    return out, None
