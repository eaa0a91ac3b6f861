"""V4 sparse attention for a few queries on the CPU through the C kernel in decode.c.

Decode and speculative verification attend with 1-8 queries per layer; the reference then
costs ~40 tiny torch ops per layer, more in dispatch than in arithmetic. Same results as
`ref.sparse_attention` to float32 rounding; anything else (long prefill chunks, autograd, the
indexer's training probabilities, other dtypes) goes to the reference.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from deepfim.kernels import cbuild
from deepfim.kernels.sparse_attn import ref

_SOURCE = Path(__file__).with_name("decode.c")
MAX_QUERIES = 8  # beyond this the reference's batched matmuls win
_MAX_DIM = 1024  # decode.c MAX_DIM


def _lib():
    lib = cbuild.load(_SOURCE)
    if lib is not None and not getattr(lib, "_typed", False):
        lib.sparse_attn_fwd.restype = ctypes.c_int
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        lib.sparse_attn_fwd.argtypes = [ptr, ptr, i64, i64, i64, i64, ptr, i64, ptr, ptr, i64, ptr, ctypes.c_float,
                                        i64, i64, i64, i64, ptr]  # fmt: skip
        lib._typed = True
    return lib


def available() -> bool:
    return _lib() is not None


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
    """`ref.sparse_attention`, on the C kernel for a few queries at inference."""
    args = (q, raw_kv, raw_start, q_start, window, comp_kv, visible, topk_idx, sink, scale)
    b, t, h, d = q.shape
    tensors = [x for x in (q, raw_kv, comp_kv, sink) if x is not None]
    if (
        return_comp_probs
        or t > MAX_QUERIES
        or d > _MAX_DIM
        or (torch.is_grad_enabled() and any(x.requires_grad for x in tensors))
        or any(x.device.type != "cpu" or x.dtype != torch.float32 for x in tensors)
        or (comp_kv is not None and topk_idx is None and visible is None)
        or _lib() is None
    ):
        return ref.sparse_attention(*args, return_comp_probs=return_comp_probs)
    q, raw_kv, sink = q.contiguous(), raw_kv.contiguous(), sink.contiguous()
    comp = comp_kv.contiguous() if comp_kv is not None and comp_kv.shape[1] > 0 else None
    sel = topk_idx.to(torch.int64).contiguous() if comp is not None and topk_idx is not None else None
    vis = visible.to(torch.int64).contiguous() if comp is not None and sel is None else None
    out = torch.empty_like(q)
    rc = _lib().sparse_attn_fwd(
        q.data_ptr(), raw_kv.data_ptr(), raw_kv.shape[1], raw_start, q_start, window,
        0 if comp is None else comp.data_ptr(), 0 if comp is None else comp.shape[1],
        0 if vis is None else vis.data_ptr(), 0 if sel is None else sel.data_ptr(),
        0 if sel is None else sel.shape[-1], sink.data_ptr(), scale, b, t, h, d, out.data_ptr(),
    )  # fmt: skip
    if rc:
        raise RuntimeError(f"sparse_attn_fwd failed (head dim {d})")
    return out, None
