"""V4 sparse attention with a sink, fp32 reference (the CPU path and the oracle).

One softmax per query and head over two key sources that share K = V:
* raw keys: the sliding window, query at absolute position p sees raw positions (p - W, p];
* compressed entries: either every entry k < visible[t] (HCA), or the entries a top-k index list
  selects (CSA; -1 = padding). `visible` is not applied to the list: it must hold visible entries
  only (the indexer turns invisible picks into -1) and no entry twice (torch.topk never repeats;
  a repeat would count twice on the gather path and once on the mask path).
A learned per-head sink logit joins the denominator only (a key whose value is zero).

Dimension legend: B batch, T queries, H heads, d head dim, N raw keys, C compressed entries,
K selected entries per query.
"""

from __future__ import annotations

import torch

# Queries are processed in blocks so that score matrices stay small for long prompts.
QUERY_BLOCK = 256
# Above this many compressed entries per selected entry, CSA gathers the selected keys instead
# of scoring all entries under a mask.
GATHER_RATIO = 4


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
    """Attention of T queries over the window and the compressed entries.

    Args:
        q: [B, T, H, d] queries at absolute positions q_start .. q_start+T-1.
        raw_kv: [B, N, d] raw keys (= values) at absolute positions raw_start .. raw_start+N-1.
        window: sliding window W (keys with p - W < pos <= p).
        comp_kv: [B, C, d] compressed entries, or None.
        visible: [T] number of entries each query may see (entries k < visible[t]); used by HCA.
        topk_idx: [B, T, K] selected entries (-1 = none) for CSA, or None for HCA (all visible).
        sink: [H] sink logits; scale: softmax scale.
        return_comp_probs: also return the attention probability mass on each compressed entry,
            summed over heads ([B, T, C]); used to train the indexer.
    Returns:
        out [B, T, H, d], and comp_probs or None.
    """
    b, t, h, d = q.shape
    outs, probs = [], []
    for t0 in range(0, t, QUERY_BLOCK):
        t1 = min(t, t0 + QUERY_BLOCK)
        o, p = _block(
            q[:, t0:t1], raw_kv, raw_start, q_start + t0, window, comp_kv,
            None if visible is None else visible[t0:t1], None if topk_idx is None else topk_idx[:, t0:t1],
            sink, scale, return_comp_probs,
        )  # fmt: skip
        outs.append(o)
        probs.append(p)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
    if not return_comp_probs or comp_kv is None or comp_kv.shape[1] == 0:
        return out, None
    return out, (probs[0] if len(probs) == 1 else torch.cat(probs, 1))


def _block(q, raw_kv, raw_start, q_start, window, comp_kv, visible, topk_idx, sink, scale, want_probs):
    b, t, h, d = q.shape
    qh = q.transpose(1, 2)  # [B, H, T, d]
    # raw keys this block can reach: positions (q_start - W, q_start + t - 1]
    lo = max(raw_start, q_start - window + 1)
    hi = q_start + t  # exclusive
    keys = raw_kv[:, lo - raw_start : hi - raw_start]  # [B, n, d]
    dev = q.device
    qpos = torch.arange(q_start, q_start + t, device=dev)
    kpos = torch.arange(lo, hi, device=dev)
    rel = qpos[:, None] - kpos[None, :]
    raw_mask = (rel >= 0) & (rel < window)  # [T, n]
    scores = (qh @ keys.unsqueeze(1).transpose(-1, -2)) * scale  # [B, H, T, n]
    scores = scores.masked_fill(~raw_mask, float("-inf"))
    parts = [scores]
    gathered = None
    comp_mask = None
    if comp_kv is not None and comp_kv.shape[1] > 0:
        c = comp_kv.shape[1]
        if topk_idx is None:
            comp_mask = torch.arange(c, device=dev)[None, :] < visible[:, None]  # [T, C]
            comp_mask = comp_mask.unsqueeze(0).expand(b, t, c)
        elif c > GATHER_RATIO * topk_idx.shape[-1]:
            valid = topk_idx >= 0  # [B, T, K]
            # whole rows by index (a gather over the expanded [B, T, C, d] view reads element by
            # element: 5x slower for a 128-token chunk at 16K tokens)
            rows = topk_idx.clamp_min(0) + (torch.arange(b, device=dev) * c).view(b, 1, 1)
            gathered = comp_kv.reshape(b * c, d).index_select(0, rows.reshape(-1)).view(b, t, -1, d)  # [B, T, K, d]
            sc = torch.einsum("bhtd,btkd->bhtk", qh, gathered) * scale
            parts.append(sc.masked_fill(~valid.unsqueeze(1), float("-inf")))
        else:
            comp_mask = torch.zeros(b, t, c + 1, dtype=torch.bool, device=dev)
            comp_mask.scatter_(-1, torch.where(topk_idx >= 0, topk_idx, c), True)
            comp_mask = comp_mask[..., :c]
        if gathered is None:
            sc = (qh @ comp_kv.unsqueeze(1).transpose(-1, -2)) * scale  # [B, H, T, C]
            parts.append(sc.masked_fill(~comp_mask.unsqueeze(1), float("-inf")))
    parts.append(sink.float().view(1, h, 1, 1).expand(b, h, t, 1))
    logits = torch.cat(parts, -1)
    logits = logits - logits.amax(-1, keepdim=True)
    p = torch.softmax(logits, -1)
    n = keys.shape[1]
    out = p[..., :n] @ keys.unsqueeze(1)  # [B, H, T, d]
    comp_probs = None
    if len(parts) == 3:
        pc = p[..., n:-1]
        if gathered is not None:
            out = out + torch.einsum("bhtk,btkd->bhtd", pc, gathered)
            if want_probs:
                comp_probs = torch.zeros(b, t, comp_kv.shape[1] + 1, dtype=p.dtype, device=dev)
                comp_probs.scatter_add_(-1, torch.where(topk_idx >= 0, topk_idx, comp_kv.shape[1]), pc.sum(1))
                comp_probs = comp_probs[..., :-1]
        else:
            out = out + pc @ comp_kv.unsqueeze(1)
            if want_probs:
                comp_probs = pc.sum(1)  # [B, T, C]
    return out.transpose(1, 2), comp_probs
