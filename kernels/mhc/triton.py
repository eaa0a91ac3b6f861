"""mHC (manifold-constrained hyper-connections) in Triton: Sinkhorn, fused hc_pre / hc_head, hc_post.

Same math as `ref.py` (see README.md). Dimension legend: NT tokens (batch dims flattened),
n streams (hc_mult, at most 8), D hidden size, M = (2+n)*n mixing outputs.

* `_sinkhorn_fwd_kernel`: BLOCK_T tokens per program, each token's n x n matrix padded to
  NP x NP (zeros stay zeros through every normalisation).
* `_hc_pre_fwd_kernel`: per block of tokens, the mixing GEMM [BT, n*D] x [n*D, M] (fp32, one
  pass over x that also accumulates the RMS), then sigmoid gates, Sinkhorn on the comb tile,
  and u = sum_i pre_i x_i (a second pass over x). With HAS_COMB=False it is `hc_head`.
* `_hc_post_fwd_kernel`: X'_j = post_j f + sum_i comb[i, j] X_i, per (token block, D block).

Forward only (training on the CPU uses ref.py with the C Sinkhorn of cpu.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepfim.kernels.triton_checks import FLOAT_DTYPES, block_size, check_tensor

MAX_STREAMS = 8


@triton.jit
def _sinkhorn_tile(logits, valid, iters, eps):
    """[BT, NP, NP] logits -> Sinkhorn-Knopp projection; entries outside `valid` come out 0."""
    l = tl.where(valid, logits, float("-inf"))
    mx = tl.max(l, axis=2)
    mx = tl.where(mx == float("-inf"), 0.0, mx)
    e = tl.exp(l - mx[:, :, None])
    z = tl.sum(e, axis=2)
    z = tl.where(z == 0.0, 1.0, z)
    m = tl.where(valid, e / z[:, :, None] + eps, 0.0)
    m = m / (tl.sum(m, axis=1)[:, None, :] + eps)  # columns: sum over the source-stream axis
    for _ in range(iters - 1):
        m = m / (tl.sum(m, axis=2)[:, :, None] + eps)
        m = m / (tl.sum(m, axis=1)[:, None, :] + eps)
    return m


@triton.jit
def _sinkhorn_fwd_kernel(
    logits_ptr, out_ptr, count, n, iters, eps,
    BLOCK_T: tl.constexpr, NP: tl.constexpr,
):  # fmt: skip
    offs_t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_i = tl.arange(0, NP)
    valid = (offs_t < count)[:, None, None] & (offs_i < n)[None, :, None] & (offs_i < n)[None, None, :]
    offs = offs_t[:, None, None] * n * n + offs_i[None, :, None] * n + offs_i[None, None, :]
    logits = tl.load(logits_ptr + offs, mask=valid, other=float("-inf"))
    m = _sinkhorn_tile(logits, valid, iters, eps)
    tl.store(out_ptr + offs, m, mask=valid)


@triton.jit
def _stream_column(tile, cols, i):
    """Column i of a [BT, NC] tile as a [BT] vector (Triton has no dynamic column slicing)."""
    return tl.sum(tl.where(cols[None, :] == i, tile, 0.0), axis=1)


@triton.jit
def _hc_pre_fwd_kernel(
    x_ptr, fn_ptr, base_ptr, scale_ptr,
    u_ptr, pre_out_ptr, post_ptr, comb_ptr,
    NT, D, iters, eps, norm_eps,
    N_STREAMS: tl.constexpr, NP: tl.constexpr, HAS_COMB: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    n: tl.constexpr = N_STREAMS
    NG: tl.constexpr = 16  # gate columns, padded to tl.dot's minimum
    NC: tl.constexpr = NP * NP
    K = n * D
    offs_t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    mask_t = offs_t < NT
    g = tl.arange(0, NG)
    cc = tl.arange(0, NC)
    ci = cc // NP
    cj = cc % NP
    comb_ok = (ci < n) & (cj < n)
    comb_row = 2 * n + ci * n + cj  # row of fn feeding comb[i, j]

    # mixing GEMM: one pass over the flattened streams, accumulating the sum of squares too
    acc_pre = tl.zeros([BLOCK_T, NG], tl.float32)
    acc_post = tl.zeros([BLOCK_T, NG], tl.float32)
    acc_comb = tl.zeros([BLOCK_T, NC], tl.float32)
    ss = tl.zeros([BLOCK_T], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        xt = tl.load(x_ptr + offs_t[:, None] * K + offs_k[None, :], mask=mask_t[:, None] & mask_k[None, :],
                     other=0.0).to(tl.float32)  # fmt: skip
        ss += tl.sum(xt * xt, axis=1)
        w = tl.load(fn_ptr + g[None, :].to(tl.int64) * K + offs_k[:, None], mask=mask_k[:, None] & (g < n)[None, :],
                    other=0.0)  # fmt: skip
        acc_pre = tl.dot(xt, w, acc_pre, input_precision="ieee")
        if HAS_COMB:
            w = tl.load(fn_ptr + (n + g[None, :]).to(tl.int64) * K + offs_k[:, None],
                        mask=mask_k[:, None] & (g < n)[None, :], other=0.0)  # fmt: skip
            acc_post = tl.dot(xt, w, acc_post, input_precision="ieee")
            w = tl.load(fn_ptr + comb_row[None, :].to(tl.int64) * K + offs_k[:, None],
                        mask=mask_k[:, None] & comb_ok[None, :], other=0.0)  # fmt: skip
            acc_comb = tl.dot(xt, w, acc_comb, input_precision="ieee")
    inv_rms = tl.rsqrt(ss / K + norm_eps)[:, None]

    base_pre = tl.load(base_ptr + g, mask=g < n, other=0.0)
    pre = tl.sigmoid(acc_pre * inv_rms * tl.load(scale_ptr) + base_pre[None, :]) + eps  # [BT, NG]
    gate_ok = mask_t[:, None] & (g < n)[None, :]
    tl.store(pre_out_ptr + offs_t[:, None] * n + g[None, :], pre, mask=gate_ok)
    if HAS_COMB:
        base_post = tl.load(base_ptr + n + g, mask=g < n, other=0.0)
        post = 2 * tl.sigmoid(acc_post * inv_rms * tl.load(scale_ptr + 1) + base_post[None, :])
        tl.store(post_ptr + offs_t[:, None] * n + g[None, :], post, mask=gate_ok)
        base_comb = tl.load(base_ptr + comb_row, mask=comb_ok, other=0.0)
        logits = tl.reshape(acc_comb * inv_rms * tl.load(scale_ptr + 2) + base_comb[None, :], (BLOCK_T, NP, NP))
        ok3 = tl.reshape(mask_t[:, None] & comb_ok[None, :], (BLOCK_T, NP, NP))
        comb = _sinkhorn_tile(logits, ok3, iters, eps)
        offs_ij = tl.reshape(ci * n + cj, (1, NP, NP))
        tl.store(comb_ptr + offs_t[:, None, None] * (n * n) + offs_ij, comb, mask=ok3)

    # u = sum_i pre_i x_i: second pass over x, one D block at a time
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        m2 = mask_t[:, None] & (offs_d < D)[None, :]
        u = tl.zeros([BLOCK_T, BLOCK_D], tl.float32)
        for i in tl.static_range(n):
            xi = tl.load(x_ptr + offs_t[:, None] * K + i * D + offs_d[None, :], mask=m2, other=0.0)
            u += _stream_column(pre, g, i)[:, None] * xi.to(tl.float32)
        tl.store(u_ptr + offs_t[:, None] * D + offs_d[None, :], u, mask=m2)


@triton.jit
def _hc_post_fwd_kernel(
    f_ptr, x_ptr, post_ptr, comb_ptr, out_ptr, NT, D,
    N_STREAMS: tl.constexpr, NP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    n: tl.constexpr = N_STREAMS
    offs_t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_j = tl.arange(0, NP)
    mask_t = offs_t < NT
    mask_td = mask_t[:, None] & (offs_d < D)[None, :]
    mask_tj = mask_t[:, None] & (offs_j < n)[None, :]
    f = tl.load(f_ptr + offs_t[:, None] * D + offs_d[None, :], mask=mask_td, other=0.0).to(tl.float32)
    post = tl.load(post_ptr + offs_t[:, None] * n + offs_j[None, :], mask=mask_tj, other=0.0)
    acc = post[:, :, None] * f[:, None, :]  # [BT, NP, BD]
    for i in tl.static_range(n):
        xi = tl.load(x_ptr + offs_t[:, None] * (n * D) + i * D + offs_d[None, :], mask=mask_td, other=0.0)
        comb_i = tl.load(comb_ptr + offs_t[:, None] * (n * n) + i * n + offs_j[None, :], mask=mask_tj, other=0.0)
        acc += comb_i[:, :, None] * xi.to(tl.float32)[:, None, :]
    out = out_ptr + offs_t[:, None, None] * (n * D) + offs_j[None, :, None] * D + offs_d[None, None, :]
    tl.store(out, acc, mask=mask_tj[:, :, None] & (offs_d < D)[None, None, :])


def _streams_np(n: int) -> int:
    """Padded stream count: a power of two with NP*NP >= 16 so the comb tile feeds tl.dot."""
    if not 1 <= n <= MAX_STREAMS:
        raise ValueError(f"mHC kernels support 1..{MAX_STREAMS} streams, got n={n}")
    return max(4, triton.next_power_of_2(n))


def sinkhorn(logits: torch.Tensor, iters: int, eps: float, *, block_t: int = 32) -> torch.Tensor:
    """Drop-in for `ref.sinkhorn` on [..., n, n] fp32 logits (n <= 8), forward only."""
    check_tensor("logits", logits, dtypes=(torch.float32,), contiguous=True)
    if logits.dim() < 2 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"logits must be [..., n, n], got shape {tuple(logits.shape)}")
    n = logits.shape[-1]
    np_ = _streams_np(n)
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    count = logits.numel() // (n * n)
    out = torch.empty_like(logits)
    if count:
        _sinkhorn_fwd_kernel[(triton.cdiv(count, block_t),)](logits, out, count, n, iters, eps, BLOCK_T=block_t, NP=np_)
    return out


def _check_mix(x: torch.Tensor, fn: torch.Tensor, base: torch.Tensor, scale: torch.Tensor, m: int, n_scale: int):
    check_tensor("x", x, dtypes=FLOAT_DTYPES, contiguous=True)
    if x.dim() < 2:
        raise ValueError(f"x must be [..., n, D], got shape {tuple(x.shape)}")
    n, d = x.shape[-2:]
    _streams_np(n)
    for name, t, shape in (("fn", fn, (m(n), n * d)), ("base", base, (m(n),)), ("scale", scale, (n_scale,))):
        check_tensor(name, t, dtypes=(torch.float32,), device=x.device, contiguous=True)
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} shape {tuple(t.shape)} does not match x {tuple(x.shape)} (expected {shape})")
    return n, d


def _launch_pre(x, fn, base, scale, iters, eps, norm_eps, has_comb):
    n, d = x.shape[-2:]
    lead = x.shape[:-2]
    nt = x.numel() // (n * d)
    dev = x.device
    u = torch.empty(*lead, d, dtype=torch.float32, device=dev)
    pre = torch.empty(*lead, n, dtype=torch.float32, device=dev)
    post = torch.empty(*lead, n, dtype=torch.float32, device=dev) if has_comb else pre
    comb = torch.empty(*lead, n, n, dtype=torch.float32, device=dev) if has_comb else pre
    block_t = 16
    if nt:
        _hc_pre_fwd_kernel[(triton.cdiv(nt, block_t),)](
            x, fn, base, scale, u, pre, post, comb, nt, d, iters, eps, norm_eps,
            N_STREAMS=n, NP=_streams_np(n), HAS_COMB=has_comb,
            BLOCK_T=block_t, BLOCK_K=block_size(n * d, hi=64), BLOCK_D=block_size(d, hi=128),
            num_warps=8,  # 4 warps spill the three accumulators and the x tile on sm_90
        )  # fmt: skip
    return u, pre, post, comb


def hc_pre(
    x: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scale: torch.Tensor,
    iters: int,
    eps: float,
    norm_eps: float,
    sinkhorn_fn=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Drop-in for `ref.hc_pre` (Sinkhorn is fused, so `sinkhorn_fn` is ignored).

    Returns u [..., D], post [..., n], comb [..., n, n], all fp32 like the reference.
    """
    _check_mix(x, fn, base, scale, lambda n: (2 + n) * n, 3)
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    u, _, post, comb = _launch_pre(x, fn, base, scale, iters, eps, norm_eps, True)
    return u, post, comb


def hc_head(
    x: torch.Tensor, fn: torch.Tensor, base: torch.Tensor, scale: torch.Tensor, eps: float, norm_eps: float
) -> torch.Tensor:
    """Drop-in for `ref.hc_head`: [..., n, D] streams -> [..., D] (fp32)."""
    _check_mix(x, fn, base, scale, lambda n: n, 1)
    return _launch_pre(x, fn, base, scale, 1, eps, norm_eps, False)[0]


def hc_post(f: torch.Tensor, x: torch.Tensor, post: torch.Tensor, comb: torch.Tensor) -> torch.Tensor:
    """Drop-in for `ref.hc_post`: f [..., D], x [..., n, D], post [..., n], comb [..., n, n] -> [..., n, D]."""
    check_tensor("x", x, dtypes=FLOAT_DTYPES, contiguous=True)
    n, d = x.shape[-2:]
    np_ = _streams_np(n)
    lead = tuple(x.shape[:-2])
    for name, t, shape in (("f", f, (*lead, d)), ("post", post, (*lead, n)), ("comb", comb, (*lead, n, n))):
        check_tensor(name, t, dtypes=FLOAT_DTYPES if name == "f" else (torch.float32,), device=x.device,
                     contiguous=True)  # fmt: skip
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} shape {tuple(t.shape)} does not match x {tuple(x.shape)} (expected {shape})")
    nt = x.numel() // (n * d)
    out = torch.empty(*lead, n, d, dtype=torch.float32, device=x.device)
    block_t, block_d = 8, block_size(d, hi=128)
    if nt:
        grid = (triton.cdiv(nt, block_t), triton.cdiv(d, block_d))
        _hc_post_fwd_kernel[grid](f, x, post, comb, out, nt, d, N_STREAMS=n, NP=np_, BLOCK_T=block_t, BLOCK_D=block_d)
    return out
