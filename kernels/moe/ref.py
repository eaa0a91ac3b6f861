"""V4 mixture-of-experts routing and expert compute, fp32 reference (the CPU path).

Dimension legend: N tokens, D hidden, E routed experts, K experts per token, I expert width.
Expert weights held in another dtype than the activations (bf16 on a CPU that multiplies it
natively) take part in the products only: each product runs in the weight's dtype and returns
in the activations', so the SwiGLU and the sums over a token's experts stay fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scores_from_logits(logits: torch.Tensor, score_func: str) -> torch.Tensor:
    if score_func == "sqrtsoftplus":
        return torch.sqrt(F.softplus(logits))
    if score_func == "sigmoid":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=-1)


def route(
    scores: torch.Tensor,
    k: int,
    route_scale: float,
    bias: torch.Tensor | None = None,
    fixed_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chooses K experts per token and their weights.

    Args:
        scores: [N, E] router scores.
        bias: [E] balancing bias, used for *selection only*.
        fixed_idx: [N, K] experts fixed by token id (hash layers); overrides selection.
    Returns:
        weights [N, K] (unbiased scores renormalised to sum 1, times route_scale), idx [N, K].
    """
    if fixed_idx is not None:
        idx = fixed_idx.long()
    else:
        biased = scores if bias is None else scores + bias
        idx = biased.topk(k, dim=-1, sorted=False).indices
    weights = scores.gather(1, idx)
    weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    return weights * route_scale, idx


def swiglu(gate: torch.Tensor, up: torch.Tensor, limit: float) -> torch.Tensor:
    """silu(min(gate, limit)) * clamp(up, -limit, limit); no clamp when limit <= 0."""
    if limit > 0:
        gate = gate.clamp(max=limit)
        up = up.clamp(-limit, limit)
    return F.silu(gate) * up


def _product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T in w's dtype, returned in x's."""
    if x.dtype == w.dtype:
        return F.linear(x, w)
    return F.linear(x.to(w.dtype), w).to(x.dtype)


# Inference on many tokens runs every expert in one batched product over the tokens padded to
# the busiest expert's count, while that pads at most this many times the (token, expert) pairs:
# ~20 ops a layer where a loop over the experts issues ~15 per expert (a 128-token prefill chunk
# of the embedded model: ~10 % faster). The products are the loop's, row for row.
PADDED_MAX_WASTE = 4


def _experts_padded(x, weights, order, counts, m: int, w1, w2, w3, limit: float) -> torch.Tensor:
    """`experts_forward` as three batched products over [E, M, ...] (M: the most pairs of one expert)."""
    n_pairs, e, k = order.numel(), w1.shape[0], weights.shape[-1]
    expert = torch.repeat_interleave(torch.arange(e, device=x.device), counts)  # of each sorted pair
    slot = torch.arange(n_pairs, device=x.device) - (torch.cumsum(counts, 0) - counts)[expert]
    rows = expert * m + slot  # each sorted pair's row in the padded [E * M] layout
    token = order // k

    def padded(inp: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        out = inp.new_zeros(e * m, inp.shape[-1], dtype=dtype)
        out[rows] = inp.to(dtype)
        return out.view(e, m, -1)

    def product(inp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # `_product` for every expert at once
        return torch.bmm(inp, w.transpose(1, 2)).view(e * m, -1)[rows].to(x.dtype)

    xs = padded(x[token], w1.dtype)
    h = swiglu(product(xs, w1), product(xs, w3), limit) * weights.reshape(-1)[order, None]
    return torch.zeros_like(x).index_add_(0, token, product(padded(h, w2.dtype), w2))


def experts_forward(
    x: torch.Tensor,
    weights: torch.Tensor,
    idx: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    limit: float,
) -> torch.Tensor:
    """Sum over each token's K experts of weight * W2 swiglu(W1 x, W3 x).

    Args:
        x: [N, D]; weights, idx: [N, K]; w1, w3: [E, I, D]; w2: [E, D, I].
    """
    n, k = idx.shape
    if n * k <= 8:
        # decode: a handful of (token, expert) pairs; index the stacked weights by python ints
        # (views, no copies) instead of gathering [N*K, I, D] weight tensors
        rows = []
        for token, (experts, ws) in enumerate(zip(idx.tolist(), weights.unbind(0), strict=True)):
            xt = x[token]
            y = None
            for j, e in enumerate(experts):
                h = swiglu(_product(xt, w1[e]), _product(xt, w3[e]), limit) * ws[j]
                y = _product(h, w2[e]) if y is None else y + _product(h, w2[e])
            rows.append(y)
        return torch.stack(rows)
    flat_idx = idx.reshape(-1)
    order = flat_idx.argsort(stable=True)
    counts = torch.bincount(flat_idx, minlength=w1.shape[0])
    busiest = int(counts.max())
    if not torch.is_grad_enabled() and w1.shape[0] * busiest <= PADDED_MAX_WASTE * n * k:
        return _experts_padded(x, weights, order, counts, busiest, w1, w2, w3, limit)
    counts = counts.tolist()
    out = torch.zeros_like(x)
    token_of = order // k
    weight_of = weights.reshape(-1)[order]
    start = 0
    for e, count in enumerate(counts):
        if count == 0:
            continue
        tok = token_of[start : start + count]
        xe = x[tok]  # [n_e, D]
        h = swiglu(_product(xe, w1[e]), _product(xe, w3[e]), limit) * weight_of[start : start + count, None]
        out.index_add_(0, tok, _product(h, w2[e]))
        start += count
    return out
