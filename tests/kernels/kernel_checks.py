"""Comparison helpers for the kernel tests (fla's assert_close with FlashMLA's inf/NaN check)."""

from __future__ import annotations

import math

import torch

# (atol, rtol) for kernel outputs against the fp32 reference, by the kernel's output dtype
TOLERANCES = {
    torch.float32: (2e-5, 2e-5),
    torch.bfloat16: (3e-2, 3e-2),
    torch.float16: (3e-3, 3e-3),
}


def assert_close(name: str, ref: torch.Tensor, tri: torch.Tensor, atol: float | None = None, rtol: float | None = None):
    """Same shape, NaN/inf in the same places, finite values within tolerance; the message carries
    the max error and the error relative to the reference's magnitude (fla's ratio)."""
    assert ref.shape == tri.shape, f"{name}: shape {tuple(tri.shape)} != ref {tuple(ref.shape)}"
    default_atol, default_rtol = TOLERANCES[tri.dtype if tri.dtype in TOLERANCES else torch.float32]
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    r, t = ref.double(), tri.double()
    assert torch.equal(r.isnan(), t.isnan()), f"{name}: NaN at {(r.isnan() ^ t.isnan()).nonzero()[:5].tolist()}"
    inf_r, inf_t = r.isinf(), t.isinf()
    assert torch.equal(inf_r, inf_t) and torch.equal(r[inf_r], t[inf_t]), f"{name}: infinities differ"
    fin = r.isfinite()
    err = (r[fin] - t[fin]).abs()
    max_err = err.max().item() if err.numel() else 0.0
    ratio = math.sqrt(err.square().mean().item() / max(r[fin].square().mean().item(), 1e-30)) if err.numel() else 0.0
    ok = bool((err <= atol + rtol * r[fin].abs()).all())
    assert ok, f"{name}: max abs err {max_err:.3e}, rms ratio {ratio:.3e} (atol {atol}, rtol {rtol})"


# GEMM outputs against the fp32 reference, by the output dtype: (max |err| / max |ref|, rms err / rms ref).
# Relative to the output's scale, not per element: a sum of products that cancels to near zero carries
# the rounding of its terms, not of itself. bf16 rounds the output (and, in the MoE, the intermediates).
GEMM_TOLERANCES = {
    torch.float32: (1e-5, 1e-6),
    torch.bfloat16: (2e-2, 5e-3),
}


def assert_gemm_close(name: str, ref: torch.Tensor, out: torch.Tensor) -> None:
    """assert_close with tolerances scaled to max |ref|, plus fla's rms-ratio bound."""
    max_tol, rms_tol = GEMM_TOLERANCES[out.dtype]
    r, t = ref.double(), out.double()
    scale = r[r.isfinite()].abs().max().item() if r.isfinite().any() else 1.0
    assert_close(name, ref, out, atol=max_tol * scale, rtol=0.0)
    fin = r.isfinite()
    ratio = math.sqrt((r[fin] - t[fin]).square().mean().item() / max(r[fin].square().mean().item(), 1e-30))
    assert ratio <= rms_tol, f"{name}: rms error ratio {ratio:.3e} > {rms_tol}"
