"""mHC on the CPU through the C kernels in mhc.c: Sinkhorn (forward and backward) and, for
inference on a few tokens (decode, speculative verification), the fused `hc_pre`.

Same results as `ref` to float32 rounding; each falls back to the reference when the kernel
cannot be built or the input is not what it handles.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from deepfim.kernels import cbuild
from deepfim.kernels.mhc import ref

_SOURCE = Path(__file__).with_name("mhc.c")
# mhc.c: MAX_N = 8 streams; its backward keeps 2 * iters states of MAX_STEPS = 128
_MAX_N, _MAX_ITERS = 8, 64
# the fused hc_pre loops over tokens without BLAS: worth it while per-op dispatch dominates
FUSED_HC_PRE_MAX_TOKENS = 8


def _lib():
    lib = cbuild.load(_SOURCE)
    if lib is not None and not getattr(lib, "_typed", False):
        for fn in (lib.sinkhorn_fwd, lib.sinkhorn_bwd):
            fn.restype = ctypes.c_int
        lib.sinkhorn_fwd.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int,
                                     ctypes.c_int, ctypes.c_float]  # fmt: skip
        lib.sinkhorn_bwd.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int, ctypes.c_int, ctypes.c_float]  # fmt: skip
        lib.hc_pre_fwd.restype = ctypes.c_int
        lib.hc_pre_fwd.argtypes = (
            [ctypes.c_void_p] * 4
            + [ctypes.c_int64, ctypes.c_int, ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_float]
            + [ctypes.c_void_p] * 3
        )
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


def hc_pre(
    x: torch.Tensor, fn: torch.Tensor, base: torch.Tensor, scale: torch.Tensor, iters: int, eps: float, norm_eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`ref.hc_pre` with the C Sinkhorn; fused into one C call for a few tokens without autograd."""
    *lead, n, dim = x.shape
    tokens = x.numel() // (n * dim)
    fused = (
        tokens <= FUSED_HC_PRE_MAX_TOKENS
        and not (torch.is_grad_enabled() and (x.requires_grad or fn.requires_grad))
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (x, fn, base, scale))
        and n <= _MAX_N
        and 1 <= iters <= _MAX_ITERS
        and _lib() is not None
    )
    if not fused:
        return ref.hc_pre(x, fn, base, scale, iters, eps, norm_eps, sinkhorn)
    x, fn, base, scale = (t.contiguous() for t in (x, fn, base, scale))
    u = x.new_empty(*lead, dim)
    post = x.new_empty(*lead, n)
    comb = x.new_empty(*lead, n, n)
    rc = _lib().hc_pre_fwd(x.data_ptr(), fn.data_ptr(), base.data_ptr(), scale.data_ptr(), tokens, n, dim, iters,
                           eps, norm_eps, u.data_ptr(), post.data_ptr(), comb.data_ptr())  # fmt: skip
    if rc:
        raise RuntimeError(f"hc_pre_fwd failed for n={n}, iters={iters}")
    return u, post, comb
