"""How a checkpoint is loaded for a device: where, kept quantized or not, in which dense dtype.

* CUDA: FP8 linears and FP4 experts stay in checkpoint form (the Triton kernels dequantize them in
  registers) and the other matrices are bf16 (v4-model.md; architecture decision 2).
* CPU: everything dequantized at load, unless `keep_quantized` says otherwise or the memory
  planner finds that only the checkpoint form fits the host. The dense matrices are bf16 where
  the CPU multiplies bf16 natively (AVX512-BF16 or AMX: torch's bf16 matmul runs at ~4x its
  fp32 one on one core, 441 against 105 GFLOP/s for a 600 x 256 x 256 product) and every matrix
  of the checkpoint is a bf16 value (stored bf16, or FP8/FP4 with power-of-two block scales): the
  weights lose nothing, the activations are rounded to bf16 at each product, as on a GPU. Else
  fp32 (without those instructions torch's bf16 matmul is far slower than its fp32 one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from deepfim.devices import resolve_device
from deepfim.engine.model import memory_plan
from deepfim.engine.model.checkpoint_formats import quantized_modules, read_headers
from deepfim.engine.model.config import ModelArgs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    device: torch.device
    keep_quantized: bool
    dtype: torch.dtype

    def describe(self) -> str:
        form = "FP8/FP4 kept quantized" if self.keep_quantized else "dequantized"
        return f"{self.device}, {form}, dense {str(self.dtype).removeprefix('torch.')}"


def load_options(checkpoint: str | Path, device: str = "cpu", keep_quantized: bool | None = None) -> LoadOptions:
    """The options for `checkpoint` on `device` (DeviceError when the machine has no such device)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return LoadOptions(dev, True if keep_quantized is None else keep_quantized, torch.bfloat16)
    headers = _headers(Path(checkpoint))  # read once for both decisions
    dtype = cpu_dense_dtype(Path(checkpoint), headers)
    if keep_quantized is None:
        keep_quantized = _only_kept_fits(Path(checkpoint), dtype, headers)
    return LoadOptions(dev, keep_quantized, dtype)


def _headers(checkpoint: Path) -> dict | None:
    """The checkpoint's stored tensors, or None when they cannot be read (the loader reports why)."""
    from deepfim.engine.model.loader import CheckpointError, shard_files

    try:
        return read_headers(shard_files(checkpoint))
    except (OSError, CheckpointError, ValueError):
        return None


def cpu_multiplies_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions torch's matmul uses (AVX512-BF16, AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, private: absent is no
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


_QUANTIZED = ("F8_E4M3", "F4", "I8", "U8")  # FP8, FP4 (packed in bytes)


def cpu_dense_dtype(checkpoint: Path, headers: dict | None = None) -> torch.dtype:
    """bf16 where this CPU multiplies it natively and the checkpoint's matrices lose nothing in it:
    every stored matrix (a 2-D or 3-D `...weight` or expert tensor) bf16, or FP8/FP4 with
    power-of-two (E8M0) block scales; else fp32. `headers`: the checkpoint's, if already read."""
    if not cpu_multiplies_bf16():
        return torch.float32
    headers = headers if headers is not None else _headers(checkpoint)
    if headers is None:
        return torch.float32  # the loader reports the checkpoint's problem itself
    for name, stored in headers.items():
        if name.rsplit(".", 1)[-1] not in ("weight", "w1", "w2", "w3") or len(stored.shape) < 2:
            continue
        if stored.dtype == "BF16":
            continue
        if stored.dtype not in _QUANTIZED:
            return torch.float32
        base = name.removesuffix(".weight")
        scale = headers.get(f"{base}.scale") or headers.get(f"{name}_scale")
        if scale is None or scale.dtype != "F8_E8M0":
            return torch.float32
    return torch.bfloat16


def _only_kept_fits(checkpoint: Path, dtype: torch.dtype, headers: dict | None) -> bool:
    """The planner's decision on the CPU: keep the checkpoint form when the dense weights (in the
    `dtype` they would be held in) would not fit the host's free memory and the checkpoint form does."""
    try:
        args = ModelArgs.from_file(checkpoint)
    except (ValueError, OSError):
        return False  # the loader reports the checkpoint's problem itself
    if headers is None:
        return False
    fp8, fp4 = quantized_modules(headers)
    if not (fp8 or fp4):
        return False
    free = memory_plan.available_bytes(torch.device("cpu"))
    dense = memory_plan.plan_weights(args, headers, dtype, False).weight_bytes
    kept = memory_plan.plan_weights(args, headers, dtype, True).weight_bytes
    if dense > free >= kept:
        log.warning("%s: dense weights (%.1f GiB) do not fit the %.1f GiB free, keeping FP8/FP4 weights quantized "
                    "(%.1f GiB)", checkpoint, dense / memory_plan.GiB, free / memory_plan.GiB,
                    kept / memory_plan.GiB)  # fmt: skip
        return True
    return False


def load_for_device(
    checkpoint: str | Path,
    device: str = "cpu",
    keep_quantized: bool | None = None,
    layout=None,
    hot_experts: int | None = None,
):
    """`loader.load_model` with the options for `device` (`hot_experts`: expert_offload.py)."""
    from deepfim.engine.model.loader import load_model

    if hot_experts is not None and hot_experts < 1:
        raise ValueError(f"--hot-experts must be at least 1, got {hot_experts}")
    options = load_options(checkpoint, device, keep_quantized)
    log.info("loading %s on %s", checkpoint, options.describe())
    return load_model(checkpoint, options.device, options.dtype, options.keep_quantized, layout,
                      hot_experts=hot_experts)  # fmt: skip
