"""Manifold-constrained hyper-connections (mHC), fp32 reference (the CPU path).

Dimension legend: B batch, T tokens, n streams (hc_mult), D hidden size.
See kernels/mhc/README.md for the math.
"""

from __future__ import annotations

import torch


def _mix(x: torch.Tensor, fn: torch.Tensor, norm_eps: float) -> torch.Tensor:
    """Per-token mixing logits: RMS-normalise the flattened streams, project with `fn`.

    The per-token RMS scale is applied after the projection (the same value, without
    materialising the normalised [B, T, n*D] streams).
    """
    flat = x.flatten(-2).float()  # [B, T, n*D]
    inv_rms = torch.rsqrt(flat.square().mean(-1, keepdim=True) + norm_eps)  # [B, T, 1]
    return (flat @ fn.t()) * inv_rms  # [B, T, m]


def sinkhorn(logits: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
    """Projects [..., n, n] logits to a (nearly) doubly stochastic matrix.

    Row softmax (+eps), column normalisation, then `iters - 1` rounds of row and column
    normalisation, each dividing by (sum + eps).
    """
    m = torch.softmax(logits, dim=-1) + eps
    m = m / (m.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        m = m / (m.sum(-1, keepdim=True) + eps)
        m = m / (m.sum(-2, keepdim=True) + eps)
    return m


def hc_pre(
    x: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scale: torch.Tensor,
    iters: int,
    eps: float,
    norm_eps: float,
    sinkhorn_fn=sinkhorn,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collapses the streams into a sublayer input and computes the residual mixing.

    Args:
        x: [B, T, n, D] residual streams.
        fn: [(2+n)*n, n*D] mixing projection; base: [(2+n)*n]; scale: [3].
        sinkhorn_fn: `sinkhorn` or a drop-in (the C kernel in kernels/mhc/cpu.py).
    Returns:
        u [B, T, D] sublayer input, post [B, T, n] output weights, comb [B, T, n, n]
        (row = source stream, column = destination stream).
    """
    n = x.shape[-2]
    mix = _mix(x, fn, norm_eps)  # [B, T, (2+n)*n]
    pre = torch.sigmoid(mix[..., :n] * scale[0] + base[:n]) + eps  # [B, T, n]
    post = 2 * torch.sigmoid(mix[..., n : 2 * n] * scale[1] + base[n : 2 * n])  # [B, T, n]
    comb_logits = mix[..., 2 * n :] * scale[2] + base[2 * n :]
    comb = sinkhorn_fn(comb_logits.unflatten(-1, (n, n)), iters, eps)  # [B, T, n, n]
    u = (pre.unsqueeze(-1) * x).sum(-2)  # [B, T, D]
    return u, post, comb


def hc_post(f: torch.Tensor, x: torch.Tensor, post: torch.Tensor, comb: torch.Tensor) -> torch.Tensor:
    """New streams: X'_j = post_j * f + sum_i comb[i, j] * X_i (note the transpose)."""
    return post.unsqueeze(-1) * f.unsqueeze(-2) + comb.transpose(-1, -2) @ x


def hc_head(
    x: torch.Tensor, fn: torch.Tensor, base: torch.Tensor, scale: torch.Tensor, eps: float, norm_eps: float
) -> torch.Tensor:
    """Final collapse of the streams: weights sigmoid(mix * scale + base) + eps, no Sinkhorn."""
    weights = torch.sigmoid(_mix(x, fn, norm_eps) * scale + base) + eps  # [B, T, n]
    return (weights.unsqueeze(-1) * x).sum(-2)
