"""The lightning indexer's selection (scores and top-k) on the CPU, through select.c.

`Indexer.forward` (engine/model/transformer.py) sends inference calls here on the CPU: the
torch form builds a [T, heads, N] score tensor per chunk and is most of a long-context prefill.
The selection is the same as the torch form's up to float32 rounding of the scores (a key
whose score ties another's within rounding may be swapped for it); callers that need the
scores themselves (the indexer's training loss) or gradients use the torch form.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch

from deepfim.kernels import cbuild, references_forced

_SOURCE = Path(__file__).with_name("select.c")
# the scores of a call ([T, C] floats: 134 MB for a 128-token chunk at 1M tokens) and the top-k's,
# kept per thread and grown as needed: a fresh allocation that large is new zeroed pages at
# every call of every CSA layer
_scratch = threading.local()


def _lib():
    lib = cbuild.load(_SOURCE)
    if lib is not None and not getattr(lib, "_typed", False):
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        lib.index_select.restype = ctypes.c_int
        lib.index_select.argtypes = [ptr, ptr, ptr, i64, ptr, i64, i64, i64, i64, ptr, ptr, ptr]
        lib.index_max_dim.restype = i64
        lib.index_top_k_entries.restype = i64
        lib.index_top_k_entries.argtypes = [i64, i64]
        lib.max_dim = lib.index_max_dim()
        lib._typed = True
    return lib


def _buffer(name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
    found = getattr(_scratch, name, None)
    if found is None or found.numel() < numel:
        found = torch.empty(numel, dtype=dtype)
        setattr(_scratch, name, found)
    return found


def handles(q: torch.Tensor, keys: torch.Tensor) -> bool:
    """Whether `select` takes these inputs: CPU float32 without autograd, outside
    `references_only()` (training's held-out loss: the training steps' math), the library builds
    here and the head dim is one it takes."""
    if (
        references_forced()
        or q.device.type != "cpu"
        or keys.device.type != "cpu"
        or not q.dtype == keys.dtype == torch.float32
        or (torch.is_grad_enabled() and (q.requires_grad or keys.requires_grad))
    ):
        return False
    lib = _lib()
    return lib is not None and q.shape[-1] <= lib.max_dim


def select(q: torch.Tensor, weights: torch.Tensor, keys: torch.Tensor, visible: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k entry indices [B, T, k] (best first, -1 where fewer than k are visible) of
    I[b, t, c] = sum_h weights[b, t, h] * relu(q[b, t, h] . keys[b, c]) over c < visible[t].
    q [B, T, H, d], weights [B, T, H] (any positive scale folded in), keys [B, C, d]."""
    b, t, h, d = q.shape
    c = keys.shape[1]
    lib = _lib()
    q, weights, keys = q.contiguous(), weights.float().contiguous(), keys.contiguous()
    visible = visible.to(torch.int64).contiguous()
    idx = torch.empty(b, t, k, dtype=torch.int64)
    scores = _buffer("scores", t * max(c, 1), torch.float32)
    kept = _buffer("kept", lib.index_top_k_entries(k, c) * 2, torch.int64)  # (float, int64) pairs
    for i in range(b):
        rc = lib.index_select(q[i].data_ptr(), weights[i].data_ptr(), keys[i].data_ptr(), c, visible.data_ptr(), t,
                              h, d, k, idx[i].data_ptr(), scores.data_ptr(), kept.data_ptr())  # fmt: skip
        if rc:
            raise ValueError(f"index_select does not take heads={h} dim={d} k={k}")
    return idx
