"""Kernel test fixtures: Triton modules loaded under the CPU interpreter, NaN-poisoned outputs.

`TRITON_INTERPRET=1` is set only while a kernel test module runs (module-scoped monkeypatch),
so it never reaches other test directories. Triton decides interpreted-vs-compiled when a
`@triton.jit` function is defined, so the kernel modules are imported (or re-imported) under it.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch


@pytest.fixture(scope="module")
def triton_op():
    """Returns a loader: triton_op("sparse_attn") -> the interpreted deepfim.kernels.sparse_attn.triton."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")

        def load(op: str):
            name = f"deepfim.kernels.{op}.triton"
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
