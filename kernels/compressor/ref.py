"""Window pooling of the V4 compressors (HCA and CSA), fp32 reference.

Each closed window of m tokens yields one entry: a softmax over the window's slots, taken
independently per channel, weights the slots' projected values.
* HCA (no overlap): the m tokens of the window, width d.
* CSA (overlap): projections are 2d wide; entry k pools 2m slots: the first halves (A) of the
  m tokens of window k-1 and the second halves (B) of the m tokens of window k. Window -1 does
  not exist: its slots get gate -inf.

Dimension legend: B batch, W closed windows, m ratio, c projection width, d entry width.
"""

from __future__ import annotations

import torch


def pool_windows(
    kv: torch.Tensor,
    gate: torch.Tensor,
    prev_kv: torch.Tensor | None,
    prev_gate: torch.Tensor | None,
    overlap: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Pools closed windows into entries.

    Args:
        kv, gate: [B, W, m, c] projections of the windows' tokens (gate already includes `ape`).
        prev_kv, prev_gate: [B, m, d] A-halves of the window before the first one (CSA), or None.
        overlap: CSA layout (c = 2d) if True, HCA (c = d) otherwise.
    Returns:
        entries [B, W, d] (before norm and RoPE) and, for CSA, the A-halves of the last window
        (the next call's prev_kv, prev_gate).
    """
    if not overlap:
        weights = torch.softmax(gate, dim=2)  # [B, W, m, d]
        return (weights * kv).sum(2), None, None
    b, w, m, c = kv.shape
    d = c // 2
    a_kv, b_kv = kv[..., :d], kv[..., d:]
    a_gate, b_gate = gate[..., :d], gate[..., d:]
    if prev_kv is None:
        prev_kv = kv.new_zeros(b, 1, m, d)
        prev_gate = gate.new_full((b, 1, m, d), float("-inf"))
    else:
        prev_kv, prev_gate = prev_kv.unsqueeze(1), prev_gate.unsqueeze(1)
    first_kv = torch.cat([prev_kv, a_kv[:, :-1]], 1)  # A-halves of window k-1: [B, W, m, d]
    first_gate = torch.cat([prev_gate, a_gate[:, :-1]], 1)
    slots_kv = torch.cat([first_kv, b_kv], 2)  # [B, W, 2m, d]
    slots_gate = torch.cat([first_gate, b_gate], 2)
    weights = torch.softmax(slots_gate, dim=2)
    return (weights * slots_kv).sum(2), a_kv[:, -1], a_gate[:, -1]
