"""Compute kernels, one folder per op: `ref.py` (pure torch, fp32: the CPU path and the
oracle), `triton.py` (GPU kernel with a checked wrapper), `README.md` (the math).

Each op package's `__init__` exposes dispatchers with the refs' signatures: CUDA tensors with
no autograd through them go to the Triton kernel, everything else to the reference. On a CPU
machine they are the references, call for call.

This package imports no torch itself: `cbuild` starts compiling the C kernels at process start,
before torch is imported (see `kernels/cbuild.py`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_local = threading.local()


@contextlib.contextmanager
def references_only():
    """Within this block the dispatchers pick the torch references on CUDA too (training's
    held-out evaluation: the same math as its training steps)."""
    before = getattr(_local, "references_only", False)
    _local.references_only = True
    try:
        yield
    finally:
        _local.references_only = before


def references_forced() -> bool:
    """Whether this thread is inside `references_only()`."""
    return getattr(_local, "references_only", False)


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """True for CUDA inputs that need no gradient (the Triton kernels are forward-only)."""
    if references_forced():
        return False
    present = [t for t in tensors if t is not None]
    if not present or not all(t.is_cuda for t in present):
        return False
    import torch  # loaded by whoever made the tensors

    return not (torch.is_grad_enabled() and any(t.requires_grad for t in present))
