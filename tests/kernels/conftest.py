"""Kernel test fixtures: Triton modules loaded under the CPU interpreter, NaN-poisoned outputs.

`TRITON_INTERPRET=1` is set only while a kernel test module runs (module-scoped monkeypatch),
so it never reaches other test directories. Triton decides interpreted-vs-compiled when a
`@triton.jit` function is defined, so the kernel modules are imported (or re-imported) under it.

Triton's own library functions (`tl.zeros`, `tl.sigmoid`, ...) are defined the same way when
`triton` is first imported, so this conftest imports triton under the variable at collection,
before any test runs (transformers imports triton when the engine's HF-parity tests run). The
one thing that outlives the kernel tests: `@triton.jit` functions defined later in the session
come out interpreted; they behave the same as long as nobody launches them, which no CPU test
does (a launch needs CUDA tensors).
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

if "triton" not in sys.modules:
    with pytest.MonkeyPatch.context() as _mp:
        _mp.setenv("TRITON_INTERPRET", "1")
        importlib.import_module("triton.language")


def _triton_is_interpreted() -> bool:
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.zeros, InterpretedFunction)


@pytest.fixture(scope="module")
def triton_op():
    """Returns a loader: triton_op("sparse_attn") -> the interpreted deepfim.kernels.sparse_attn.triton
    (triton_op("moe_gemm.permute") -> deepfim.kernels.moe_gemm.permute)."""
    if not _triton_is_interpreted():
        pytest.fail("triton was imported without TRITON_INTERPRET=1 before tests/kernels/conftest.py ran; "
                    "run the kernel tests in their own process: pytest tests/kernels")  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")

        def load(op: str):
            # "sparse_attn" -> its triton.py; "moe_gemm.permute" -> that module (kernels outside triton.py)
            name = f"deepfim.kernels.{op}" if "." in op else f"deepfim.kernels.{op}.triton"
            module = sys.modules.get(name)
            if module is None:
                return importlib.import_module(name)
            # imported earlier without the interpreter: rebuild its kernels under it
            from triton.runtime.interpreter import InterpretedFunction

            kernels = [v for k, v in vars(module).items() if k.startswith("_") and k.endswith("_kernel")]
            if not all(isinstance(k, InterpretedFunction) for k in kernels):
                module = importlib.reload(module)
            return module

        yield load


def _poisoned(factory):
    def make(*args, **kwargs):
        t = factory(*args, **kwargs)
        if t.dtype.is_floating_point:
            t.fill_(float("nan"))
        elif t.dtype != torch.bool and not t.dtype.is_complex:
            t.fill_(torch.iinfo(t.dtype).max)
        return t

    return make


@pytest.fixture(autouse=True)
def nan_poison(monkeypatch):
    """torch.empty / empty_like hand out NaN-filled (ints: max-value) tensors, so an output
    element a kernel forgets to write fails the comparison instead of passing by luck."""
    monkeypatch.setattr(torch, "empty", _poisoned(torch.empty))
    monkeypatch.setattr(torch, "empty_like", _poisoned(torch.empty_like))
