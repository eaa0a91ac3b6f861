"""Host-side checks shared by the Triton wrappers (`kernels/<op>/triton.py`).

Triton runs on CUDA tensors, or on CPU tensors under the interpreter (`TRITON_INTERPRET=1`,
how the tests check every kernel against its `ref.py`). The wrappers reject anything else
with an error that names the offending tensor, rather than failing inside the launch.
"""

from __future__ import annotations

import torch
import triton

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (decided by triton's own knob)."""
    return bool(triton.knobs.runtime.interpret)


def check_tensor(
    name: str,
    t: torch.Tensor,
    *,
    ndim: int | None = None,
    dtypes: tuple[torch.dtype, ...] | None = None,
    device: torch.device | None = None,
    contiguous: bool = False,
    last_dim_contiguous: bool = True,
) -> None:
    """Raises ValueError naming `name` when `t` does not fit the kernel's expectations."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise ValueError(f"{name} dtype {t.dtype} not supported (expected one of {[str(d) for d in dtypes]})")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device} like the other inputs")
    if t.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"{name} is on {t.device}: Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 for the "
            "CPU interpreter); use the op's ref.py on the CPU"
        )
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous, got strides {t.stride()} for shape {tuple(t.shape)}")
    if last_dim_contiguous and t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{name} must have a unit-stride last dim, got strides {t.stride()}")


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 operands use exact fp32 products (the refs are fp32), not TF32."""
    return "ieee" if dtype == torch.float32 else "tf32"


def block_size(n: int, lo: int = 16, hi: int | None = None) -> int:
    """Power-of-two tile covering n, at least `lo` (tl.dot's minimum), at most `hi`."""
    b = max(lo, triton.next_power_of_2(max(1, n)))
    return b if hi is None else min(b, hi)
