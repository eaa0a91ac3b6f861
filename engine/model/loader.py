"""Loading V4 checkpoints (safetensors, memory-mapped; FP8/FP4 dequantised or kept as stored).

A checkpoint directory holds `config.json` (either form, see engine/model/config.py) and
`model.safetensors`, or shards listed in `model.safetensors.index.json`, or any `*.safetensors`.
Tensors are read one at a time with `safe_open` (memory-mapped) and dequantised straight into
the model's parameters, so peak memory is the model plus one tensor. With `keep_quantized` the
FP8 linears and FP4 experts stay in checkpoint form instead (quantized.py); with a parallel
`layout` each rank reads only its share (parallel.py, weight_placement.py). Before anything is
allocated the memory planner checks that the weights fit the device (memory_plan.py).

Every tensor is checked before it is used: its stored dtype must fit its parameter (floating
weights, FP8/FP4 only with a scale, integer routing tables within the expert count) and its
values must be finite. A checkpoint with a `SHA256SUMS` manifest (manifest.py) is verified
first, which also catches flipped bits that still form valid numbers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from deepfim.engine.model import expert_offload
from deepfim.engine.model.checkpoint_formats import HeaderError, quantized_modules, read_headers
from deepfim.engine.model.checkpoint_names import checkpoint_target
from deepfim.engine.model.checkpoint_writer import save_checkpoint
from deepfim.engine.model.config import ModelArgs
from deepfim.engine.model.manifest import ManifestError, verify_manifest
from deepfim.engine.model.quantized import keep_quantized as quantize_modules
from deepfim.engine.model.quantized import materialize
from deepfim.engine.model.transformer import Transformer
from deepfim.engine.model.weight_placement import EXPERT_PARAMS, Placement, is_kept, scale_name, stored_form
from deepfim.kernels.quant.ref import dequant_fp4_packed, dequant_fp8_blocks

log = logging.getLogger(__name__)

__all__ = ["CheckpointError", "checkpoint_keys", "load_model", "load_weights", "save_checkpoint", "shard_files"]
_FLOATS = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_QUANTISED = (torch.float8_e4m3fn, torch.float4_e2m1fn_x2, torch.int8, torch.uint8)
_SCALES = (*_FLOATS, torch.float8_e8m0fnu, torch.uint8)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names every bad tensor."""


def shard_files(ckpt_dir: Path) -> list[Path]:
    index = ckpt_dir / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{index}: unreadable index ({exc})") from exc
        files = sorted({ckpt_dir / f for f in weight_map.values()})
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise CheckpointError(f"{index}: shards missing on disk: {missing}")
        return files
    files = sorted(ckpt_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{ckpt_dir}: no *.safetensors files")
    return files


def checkpoint_keys(ckpt_dir: Path) -> dict[str, Path]:
    """Tensor name -> shard file, reading only the headers."""
    keys: dict[str, Path] = {}
    for f in shard_files(ckpt_dir):
        try:
            with safe_open(f, "pt") as h:
                names = list(h.keys())
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{f}: not a valid safetensors file ({exc})") from exc
        for k in names:
            if k in keys:
                raise CheckpointError(f"tensor {k} appears in both {keys[k].name} and {f.name}")
            keys[k] = f
    return keys


def load_model(
    ckpt_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    keep_quantized: bool = False,
    layout=None,
    check_memory: bool = True,
    hot_experts: int | None = None,
) -> Transformer:
    """Builds the model described by the directory's `config.json` and loads its weights.

    Args:
        dtype: of the dense matrices (linears, embedding, gate, dense experts); vectors (norms, mHC,
            sinks, biases) are fp32 whatever it is.
        keep_quantized: keep FP8 linears and FP4 experts as the checkpoint stores them; they are
            dequantized inside the kernels at every call (else: once, here, to `dtype`).
        layout: a `parallel.ParallelLayout`: this rank's share under tensor / expert parallelism.
        check_memory: refuse (memory_plan.MemoryPlanError) when the weights do not fit the device.
        hot_experts: keep the routed experts in (pinned) host memory and this many per layer on the
            device (expert_offload.py).
    """
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir}: checkpoint directory not found")
    try:
        if verify_manifest(ckpt_dir):
            log.info("%s: every file matches %s", ckpt_dir, "SHA256SUMS")
    except ManifestError as exc:
        raise CheckpointError(str(exc)) from exc
    args = ModelArgs.from_file(ckpt_dir)
    keys = checkpoint_keys(ckpt_dir)
    try:
        headers = read_headers(sorted(set(keys.values())))
    except HeaderError as exc:
        raise CheckpointError(str(exc)) from exc
    if args.n_mtp_layers and not any(checkpoint_target(k).name.startswith("mtp.") for k in keys):
        # transformers does not instantiate MTP, so what its save_pretrained writes has none
        log.info("%s: config declares MTP but the checkpoint has no mtp.* tensors; running without MTP", ckpt_dir)
        args = dataclasses.replace(args, n_mtp_layers=0)
    if check_memory:
        from deepfim.engine.model import memory_plan

        plan = memory_plan.plan_weights(args, headers, dtype, keep_quantized, layout, torch.device(device).type,
                                        hot_experts=hot_experts)  # fmt: skip
        memory_plan.check_fits(plan, torch.device(device))
    with torch.device("meta"):
        model = Transformer(args)
    if layout is not None:
        layout.shard_model(model)
    if keep_quantized:
        fp8, fp4 = quantized_modules(headers)
        modules = dict(model.named_modules())
        fp8 = {name: s for name, s in fp8.items() if isinstance(modules.get(name), torch.nn.Linear)}
        fp4 = {name: s for name, s in fp4.items() if name in modules and hasattr(modules[name], "w1")}
        quantize_modules(model, fp8, fp4, torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)
    offloaded = expert_offload.prepare(model, hot_experts) if hot_experts else {}
    materialize(model, torch.device(device), dtype)
    for experts in offloaded.values():
        experts.allocate(torch.device(device))
    model.reset_buffers()
    load_weights(model, keys, layout)
    return model.eval()


def load_weights(model: Transformer, keys: dict[str, Path], layout=None) -> None:
    """Copies every checkpoint tensor into `model` (this rank's share of it under `layout`),
    checking names, dtypes, shapes and values."""
    params: dict[str, torch.Tensor] = dict(model.named_parameters())
    kept_leaves = ("bias", "tid2eid", "weight", "scale", "w1", "w2", "w3", "w1_scale", "w2_scale", "w3_scale")
    params.update((n, b) for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] in kept_leaves)
    params.update(expert_offload.host_tensors(model))
    targets = {k: checkpoint_target(k) for k in keys}
    scale_of: dict[tuple[str, int | None], str] = {}
    for k, t in targets.items():
        if t.kind == "scale":
            scale_of[(t.name, t.expert)] = k
    place = Placement(params, layout)
    problems = place.problems
    handles: dict[Path, object] = {}

    def read(key: str) -> torch.Tensor:
        f = keys[key]
        if f not in handles:
            handles[f] = safe_open(f, "pt")
        return handles[f].get_tensor(key)

    used_scales: set[str] = set()
    for k, t in targets.items():
        if t.kind == "scale":
            continue
        if t.name not in params:
            problems.append(f"unexpected tensor {k}" + (f" (read as {t.name})" if t.name != k else ""))
            continue
        scale_key = scale_of.get((t.name, t.expert))
        if scale_key:
            used_scales.add(scale_key)
        if not place.wanted(t):
            continue  # another rank's expert
        param = params[t.name]
        kept = is_kept(param)
        try:
            raw, scale = read(k), read(scale_key) if scale_key else None
            problem = _dtype_problem(k, raw, scale, param, model.args.n_routed_experts, kept)
            if problem is None and kept:
                value = stored_form(k, raw, scale, params[scale_name(t)].dtype)
            elif problem is None:
                value, scale = _dequantize(k, raw, scale), None
        except (ValueError, SafetensorError) as exc:
            problem = str(exc)
        if problem is None and not kept and value.is_floating_point() and not _finite(value):
            problem = f"{k}: {int((~torch.isfinite(value)).sum())} non-finite values (NaN/Inf): corrupt weights"
        if problem:
            problems.append(problem)
            continue
        try:
            place.put(k, t, value, scale)
        except ValueError as exc:
            problems.append(str(exc))
    problems += [
        f"unexpected tensor {k} (a scale without its weight)" for k in scale_of.values() if k not in used_scales
    ]
    for name, p in params.items():
        got = place.filled.get(name)
        if name.endswith(EXPERT_PARAMS):
            missing = sorted(set(range(p.shape[0])) - (got if isinstance(got, set) else set()))
            if missing:
                problems.append(f"missing experts {_short(missing)} of {name} ({p.shape[0]} experts)")
        elif not got:
            problems.append(f"missing tensor {name} {tuple(p.shape)}")
    if problems:
        raise CheckpointError("checkpoint does not match the model:\n  " + "\n  ".join(problems))


def _finite(value: torch.Tensor) -> bool:
    """Whether every value is finite. A NaN or an Inf makes the float32 sum non-finite, and a sum
    of finite weights reaches float32's range only if the tensor is absurd: then every value is
    checked. The sum is a vectorized reduction: 20 ms for the embedded model's 262 tensors on one
    core, where `isfinite(...).all()` took 69 ms of its cold start."""
    return bool(torch.isfinite(value.sum(dtype=torch.float32))) or bool(torch.isfinite(value).all())


def _short(items: list[int]) -> str:
    return str(items[:8])[:-1] + (", ...]" if len(items) > 8 else "]")


def _dtype_problem(
    key: str, raw: torch.Tensor, scale: torch.Tensor | None, param: torch.Tensor, n_experts: int, kept: bool
) -> str | None:
    """Why a stored tensor cannot fill `param`, or None (a quantised weight without a scale is
    left to `_dequantize`, which says so)."""
    if kept:
        want = (torch.float8_e4m3fn,) if param.dtype == torch.float8_e4m3fn else (torch.int8, torch.uint8,
                                                                               torch.float4_e2m1fn_x2)  # fmt: skip
        if raw.dtype not in want or scale is None or scale.dtype not in _SCALES:
            return (
                f"{key}: stored as {raw.dtype} (scale: {None if scale is None else scale.dtype}), but its module "
                f"keeps {'FP8' if param.dtype == torch.float8_e4m3fn else 'packed FP4'} weights with scales"
            )
        return None
    if not param.is_floating_point():  # the hash-routing table: expert ids
        if raw.is_floating_point() or raw.dtype == torch.bool:
            return f"{key}: stored as {raw.dtype}, expected integer expert ids"
        if raw.numel() and (int(raw.min()) < 0 or int(raw.max()) >= n_experts):
            return f"{key}: expert ids must be in 0..{n_experts - 1}, found {int(raw.min())}..{int(raw.max())}"
        return None
    if scale is not None:
        if raw.dtype not in _QUANTISED or scale.dtype not in _SCALES:
            return f"{key}: stored as {raw.dtype} with a {scale.dtype} scale, expected FP8/FP4 with ue8m0 scales"
        return None
    if raw.dtype not in _FLOATS and raw.dtype not in (torch.float8_e4m3fn, torch.float4_e2m1fn_x2):
        return f"{key}: stored as {raw.dtype}, expected a floating-point weight"
    return None


def _dequantize(key: str, raw: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    if scale is None:
        if raw.dtype in (torch.float8_e4m3fn, torch.float4_e2m1fn_x2):
            raise ValueError(f"{key}: quantised {raw.dtype} weight without a scale tensor")
        return raw
    if raw.dtype == torch.float8_e4m3fn:
        return dequant_fp8_blocks(raw, scale)
    if raw.dtype in (torch.int8, torch.uint8, torch.float4_e2m1fn_x2):
        return dequant_fp4_packed(raw, scale)
    raise ValueError(f"{key}: scale tensor next to a {raw.dtype} weight (expected FP8 or packed FP4)")
