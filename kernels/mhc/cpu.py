"""Sinkhorn of mHC on the CPU through the C kernel in sinkhorn.c (forward and backward).

Same results as `ref.sinkhorn` to float32 rounding; falls back to it when the kernel cannot
be built or the input is not a CPU float32 tensor.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from deepfim.kernels import cbuild
from deepfim.kernels.mhc import ref

_SOURCE = Path(__file__).with_name("sinkhorn.c")
# sinkhorn.c: MAX_N = 8 streams; its backward keeps 2 * iters states of MAX_STEPS = 128
_MAX_N, _MAX_ITERS = 8, 64


def _lib():
    lib = cbuild.load(_SOURCE)
    if lib is not None and not getattr(lib, "_typed", False):
        for fn in (lib.sinkhorn_fwd, lib.sinkhorn_bwd):
            fn.restype = ctypes.c_int
        lib.sinkhorn_fwd.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int,
                                     ctypes.c_int, ctypes.c_float]  # fmt: skip
        lib.sinkhorn_bwd.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int, ctypes.c_int, ctypes.c_float]  # fmt: skip
        lib._typed = True
    return lib


class _Sinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
        logits = logits.contiguous()
        out = torch.empty_like(logits)
        n = logits.shape[-1]
        rc = _lib().sinkhorn_fwd(logits.data_ptr(), out.data_ptr(), logits.numel() // (n * n), n, iters, eps)
        if rc:
            raise RuntimeError(f"sinkhorn_fwd failed for n={n}, iters={iters}")
        ctx.save_for_backward(logits)
        ctx.iters, ctx.eps = iters, eps
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (logits,) = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_in = torch.empty_like(logits)
        n = logits.shape[-1]
        rc = _lib().sinkhorn_bwd(logits.data_ptr(), grad_out.data_ptr(), grad_in.data_ptr(),
                                 logits.numel() // (n * n), n, ctx.iters, ctx.eps)  # fmt: skip
        if rc:
            raise RuntimeError(f"sinkhorn_bwd failed for n={n}, iters={ctx.iters}")
        return grad_in, None, None


def available() -> bool:
    return _lib() is not None


def sinkhorn(logits: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
    """`ref.sinkhorn`, computed by the C kernel when possible."""
    if (
        logits.device.type != "cpu"
        or logits.dtype != torch.float32
        or logits.shape[-1] > _MAX_N
        or not 1 <= iters <= _MAX_ITERS  # beyond these the C backward (or forward) refuses
        or _lib() is None
    ):
        return ref.sinkhorn(logits, iters, eps)
    return _Sinkhorn.apply(logits, iters, eps)
