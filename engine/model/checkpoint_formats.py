"""What a checkpoint stores, from its safetensors headers alone (no tensor data is read).

`read_headers` parses each shard's JSON header: name -> dtype, shape, bytes on disk. `official_layout`
says the same for a config without any files: the tensors an official DeepSeek checkpoint of that
shape holds (v4-model.md §8.2; what `loader.save_checkpoint(weight_format="fp8", expert_format="fp4")`
writes). Both feed the memory planner (memory_plan.py), the loader's choice of which modules
stay quantized (`quantized_modules`) and the synthetic checkpoints of tests and benchmarks
(synthetic.py).
"""

from __future__ import annotations

import functools
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from deepfim.engine.model.checkpoint_names import checkpoint_target, official_expert_key
from deepfim.engine.model.config import ModelArgs

# safetensors dtype names -> torch dtypes (the ones V4 checkpoints use)
DTYPES = {
    "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E8M0": torch.float8_e8m0fnu, "I8": torch.int8, "U8": torch.uint8,
    "I32": torch.int32, "I64": torch.int64, "F4": torch.float4_e2m1fn_x2, "BOOL": torch.bool,
}  # fmt: skip
_MAX_HEADER = 100 << 20  # safetensors' own limit


class HeaderError(ValueError):
    """A shard whose header cannot be read."""


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as a shard stores it: safetensors dtype name, shape (FP4 in storage bytes), bytes."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path: Path) -> dict[str, StoredTensor]:
    """The tensors of one safetensors file, from its header."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > _MAX_HEADER:
                raise HeaderError(f"{path}: header of {size} bytes is not a safetensors header")
            raw = json.loads(f.read(size))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise HeaderError(f"{path}: unreadable safetensors header ({exc})") from exc
    out = {}
    for name, info in raw.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if info["dtype"] == "F4":  # the header counts FP4 values; two share a byte
            shape = (*shape[:-1], shape[-1] // 2)
        out[name] = StoredTensor(info["dtype"], shape, end - start)
    return out


def read_headers(files: list[Path]) -> dict[str, StoredTensor]:
    """Every tensor of a checkpoint's shards."""
    out: dict[str, StoredTensor] = {}
    for f in files:
        out.update(read_header(f))
    return out


def _element_bytes(dtype: str) -> int:
    return torch.empty(0, dtype=DTYPES[dtype]).element_size()


@functools.lru_cache(maxsize=4)
def official_layout(args: ModelArgs, weight_format: str = "fp8", expert_format: str = "fp4") -> dict[str, StoredTensor]:
    """The tensors an official checkpoint of `args` stores (names, dtypes, shapes, bytes); cached,
    so callers must not modify it.

    weight_format: "fp8" (the releases: 128 x 128 blocks) or "bf16" for the attention / shared
    expert / MTP projections; expert_format: "fp4" (1 x 32 blocks), "fp8" or "bf16".
    """
    from deepfim.engine.model.checkpoint_writer import stored_format
    from deepfim.engine.model.transformer import Transformer

    with torch.device("meta"):
        model = Transformer(args)
    out: dict[str, StoredTensor] = {}

    def put(name: str, dtype: str, shape: tuple[int, ...]) -> None:
        out[name] = StoredTensor(dtype, shape, math.prod(shape) * _element_bytes(dtype))

    def put_weight(name: str, fmt: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
        base = name[: -len(".weight")]
        if fmt == "fp8":
            put(name, "F8_E4M3", shape)
            put(f"{base}.scale", "F8_E8M0", (math.ceil(shape[0] / 128), math.ceil(shape[1] / 128)))
        elif fmt == "fp4":
            put(name, "I8", (shape[0], shape[1] // 2))
            put(f"{base}.scale", "F8_E8M0", (shape[0], shape[1] // 32))
        elif fmt == "keep":
            put(name, "I64" if dtype == torch.long else "F32", shape)
        else:
            put(name, {"bf16": "BF16", "fp32": "F32"}[fmt], shape)

    for name, t in model.state_dict().items():
        shape = tuple(t.shape)
        if name.endswith((".ffn.w1", ".ffn.w2", ".ffn.w3")):
            for e in range(shape[0]):
                put_weight(official_expert_key(name, e), expert_format, t.dtype, shape[1:])
        else:
            put_weight(name, stored_format(name, t, weight_format), t.dtype, shape)
    return out


def quantized_modules(headers: dict[str, StoredTensor]) -> tuple[dict[str, torch.dtype], dict[str, torch.dtype]]:
    """Which modules can keep their weights in checkpoint form.

    Returns:
        (FP8 linears: module name -> scale dtype, FP4 expert layers: MoE module name -> scale dtype).
        An expert layer counts only when every one of its experts' w1/w2/w3 is packed FP4 with a
        scale (FP8 experts of Base checkpoints are dequantized at load instead).
    """
    scales = {}
    for key, info in headers.items():
        t = checkpoint_target(key)
        if t.kind == "scale":
            scales[(t.name, t.expert)] = info
    fp8: dict[str, torch.dtype] = {}
    experts: dict[str, dict[tuple[str, int], bool]] = {}
    expert_scale: dict[str, torch.dtype] = {}
    for key, info in headers.items():
        t = checkpoint_target(key)
        if t.kind != "weight":
            continue
        scale = scales.get((t.name, t.expert))
        if t.expert is None:
            if info.dtype == "F8_E4M3" and scale is not None and len(info.shape) == 2:
                fp8[t.name[: -len(".weight")]] = DTYPES[scale.dtype]
            continue
        moe, w = t.name.rsplit(".", 1)
        packed = info.dtype in ("I8", "U8", "F4") and scale is not None
        experts.setdefault(moe, {})[(w, t.expert)] = packed
        if packed:
            expert_scale.setdefault(moe, DTYPES[scale.dtype])
    fp4 = {moe: expert_scale[moe] for moe, flags in experts.items() if flags and all(flags.values())}
    return fp8, fp4
