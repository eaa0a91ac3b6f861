"""Compressor window pooling: `ref.py` (torch; CPU path and oracle), `triton.py` (CUDA kernel).

`pool_windows` has the reference's signature and picks the Triton kernel for CUDA tensors
without autograd.
"""

from __future__ import annotations

import torch

from deepfim.kernels import use_triton
from deepfim.kernels.compressor import ref


def pool_windows(
    kv: torch.Tensor,
    gate: torch.Tensor,
    prev_kv: torch.Tensor | None,
    prev_gate: torch.Tensor | None,
    overlap: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """`ref.pool_windows`, on the Triton kernel where it applies."""
    if use_triton(kv, gate, prev_kv, prev_gate):
        from deepfim.kernels.compressor import triton as tri

        return tri.pool_windows(kv, gate, prev_kv, prev_gate, overlap)
    return ref.pool_windows(kv, gate, prev_kv, prev_gate, overlap)
