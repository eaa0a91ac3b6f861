"""V4 MoE routing in Triton: router scores, bias-for-selection top-k, renormalised weights.

Same math as `ref.scores_from_logits` + `ref.route` (see README.md). One program owns BLOCK_T
tokens with all E experts in registers ([BLOCK_T, BLOCK_E]); the top-k is K rounds of
argmax-and-mask on the biased scores (K is small: 6 in V4), so experts come out ordered by
biased score, highest first, ties to the lower expert id. Weights gather the *unbiased* scores
of the chosen experts, divide by their sum (+1e-20) and multiply by route_scale. With
`fixed_idx` (hash layers) the experts are given and only the weights are computed.

Expert compute (`ref.experts_forward`, grouped GEMMs) has no Triton kernel here.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepfim.kernels.triton_checks import FLOAT_DTYPES, block_size, check_tensor

SCORE_FUNCS = {"none": 0, "sqrtsoftplus": 1, "sigmoid": 2, "softmax": 3}


@triton.jit
def _log1p(y):
    """log(1 + y) for y >= 0 without losing small y (Goldberg's correction)."""
    u = 1.0 + y
    return tl.where(u == 1.0, y, tl.log(u) * (y / tl.where(u == 1.0, 1.0, u - 1.0)))


@triton.jit
def _route_fwd_kernel(
    x_ptr, bias_ptr, fixed_ptr, weights_ptr, idx_ptr,
    N, E, route_scale,
    K: tl.constexpr, K_PAD: tl.constexpr, SCORE_FUNC: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_FIXED: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr,
):  # fmt: skip
    offs_t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    mask_t = offs_t < N
    mask_e = cols < E
    x = tl.load(x_ptr + offs_t[:, None] * E + cols[None, :], mask=mask_t[:, None] & mask_e[None, :],
                other=0.0).to(tl.float32)  # fmt: skip
    if SCORE_FUNC == 1:
        # softplus as torch computes it (threshold 20), in the stable form max(x, 0) + log1p(exp(-|x|))
        sp = tl.maximum(x, 0.0) + _log1p(tl.exp(-tl.abs(x)))
        s = tl.sqrt(tl.where(x > 20.0, x, sp))
    elif SCORE_FUNC == 2:
        s = tl.sigmoid(x)
    elif SCORE_FUNC == 3:
        z = tl.where(mask_e[None, :], x, float("-inf"))
        e = tl.exp(z - tl.max(z, axis=1)[:, None])
        s = e / tl.sum(e, axis=1)[:, None]
    else:
        s = x
    s = tl.where(mask_e[None, :], s, 0.0)

    if not HAS_FIXED:
        biased = s
        if HAS_BIAS:
            biased += tl.load(bias_ptr + cols, mask=mask_e, other=0.0).to(tl.float32)[None, :]
        biased = tl.where(mask_e[None, :], biased, float("-inf"))
    offs_k = tl.arange(0, K_PAD)  # K rounded up to a power of two; columns >= K stay 0
    chosen = tl.zeros([BLOCK_T, K_PAD], tl.int32)
    w = tl.zeros([BLOCK_T, K_PAD], tl.float32)
    for j in tl.static_range(K):
        if HAS_FIXED:
            e_j = tl.load(fixed_ptr + offs_t * K + j, mask=mask_t, other=0).to(tl.int32)
        else:
            e_j = tl.argmax(biased, axis=1, tie_break_left=True).to(tl.int32)
            biased = tl.where(cols[None, :] == e_j[:, None], float("-inf"), biased)
        w_j = tl.sum(tl.where(cols[None, :] == e_j[:, None], s, 0.0), axis=1)
        chosen = tl.where(offs_k[None, :] == j, e_j[:, None], chosen)
        w = tl.where(offs_k[None, :] == j, w_j[:, None], w)
    w = w / (tl.sum(w, axis=1)[:, None] + 1e-20) * route_scale
    out = offs_t[:, None] * K + offs_k[None, :]
    mask_out = mask_t[:, None] & (offs_k < K)[None, :]
    tl.store(weights_ptr + out, w, mask=mask_out)
    tl.store(idx_ptr + out, chosen.to(tl.int64), mask=mask_out)


def route_from_logits(
    logits: torch.Tensor,
    k: int,
    route_scale: float,
    score_func: str = "sqrtsoftplus",
    bias: torch.Tensor | None = None,
    fixed_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`ref.route(ref.scores_from_logits(logits, score_func), k, route_scale, bias, fixed_idx)` in one kernel.

    Args:
        logits: [N, E] router logits (score_func "none": already scores).
        k: experts per token (1 <= k <= E; with fixed_idx, its width).
    Returns:
        weights [N, K] fp32 and idx [N, K] int64, experts ordered by biased score (highest first).
    """
    if score_func not in SCORE_FUNCS:
        raise ValueError(f"score_func must be one of {sorted(SCORE_FUNCS)}, got {score_func!r}")
    check_tensor("scores", logits, ndim=2, dtypes=FLOAT_DTYPES, contiguous=True)
    n, e = logits.shape
    dev = logits.device
    if bias is not None:
        check_tensor("bias", bias, ndim=1, dtypes=FLOAT_DTYPES, device=dev, contiguous=True)
        if bias.shape[0] != e:
            raise ValueError(f"bias has {bias.shape[0]} entries for {e} experts")
    if fixed_idx is not None:
        check_tensor("fixed_idx", fixed_idx, ndim=2, dtypes=(torch.int32, torch.int64), device=dev, contiguous=True)
        if fixed_idx.shape[0] != n:
            raise ValueError(f"fixed_idx shape {tuple(fixed_idx.shape)} does not match {n} tokens")
        k = fixed_idx.shape[1]
    if not 1 <= k <= e:
        raise ValueError(f"k must be in [1, {e}] (number of experts), got {k}")
    weights = torch.empty(n, k, dtype=torch.float32, device=dev)
    idx = torch.empty(n, k, dtype=torch.int64, device=dev)
    block_e = block_size(e, lo=2)
    block_t = max(1, min(16, 8192 // block_e))
    if n:
        _route_fwd_kernel[(triton.cdiv(n, block_t),)](
            logits, bias if bias is not None else logits, fixed_idx if fixed_idx is not None else idx,
            weights, idx, n, e, route_scale,
            K=k, K_PAD=triton.next_power_of_2(k), SCORE_FUNC=SCORE_FUNCS[score_func],
            HAS_BIAS=bias is not None, HAS_FIXED=fixed_idx is not None, BLOCK_T=block_t, BLOCK_E=block_e,
        )  # fmt: skip
    return weights, idx


def route(
    scores: torch.Tensor,
    k: int,
    route_scale: float,
    bias: torch.Tensor | None = None,
    fixed_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for `ref.route` (scores already computed)."""
    return route_from_logits(scores, k, route_scale, "none", bias, fixed_idx)
