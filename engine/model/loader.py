"""Loading and saving V4 checkpoints (safetensors, memory-mapped, FP8/FP4 dequantised).

A checkpoint directory holds `config.json` (either form, see engine/model/config.py) and
`model.safetensors`, or shards listed in `model.safetensors.index.json`, or any `*.safetensors`.
Tensors are read one at a time with `safe_open` (memory-mapped) and dequantised straight into
the model's parameters, so peak memory is the model plus one tensor.

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
from safetensors.torch import save_file
from torch import nn

from deepfim.engine.model.checkpoint_names import Target, checkpoint_target, official_expert_key
from deepfim.engine.model.config import ModelArgs
from deepfim.engine.model.manifest import ManifestError, verify_manifest
from deepfim.engine.model.transformer import Transformer
from deepfim.kernels.quant.ref import (
    dequant_fp4_packed,
    dequant_fp8_blocks,
    quantize_fp4_packed,
    quantize_fp8_blocks,
)

log = logging.getLogger(__name__)

_EXPERT_PARAMS = (".ffn.w1", ".ffn.w2", ".ffn.w3")
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
    ckpt_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Transformer:
    """Builds the model described by the directory's `config.json` and loads its weights."""
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
    if args.n_mtp_layers and not any(checkpoint_target(k).name.startswith("mtp.") for k in keys):
        # transformers does not instantiate MTP, so what its save_pretrained writes has none
        log.info("%s: config declares MTP but the checkpoint has no mtp.* tensors; running without MTP", ckpt_dir)
        args = dataclasses.replace(args, n_mtp_layers=0)
    with torch.device("meta"):
        model = Transformer(args)
    _materialize(model, torch.device(device), dtype)
    model.reset_buffers()
    load_weights(model, keys)
    return model.eval()


def _materialize(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Gives every meta parameter and buffer uninitialised storage on `device` (floating point
    ones in `dtype`); shared tensors stay shared. Not `Module.to_empty`: its `empty_like` on
    meta tensors runs through torch's Python references, which import sympy (0.6 s of a cold
    start)."""
    made: dict[int, torch.Tensor] = {}

    def empty(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in made:
            made[id(t)] = torch.empty(t.shape, dtype=dtype if t.is_floating_point() else t.dtype, device=device)
        return made[id(t)]

    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                module._parameters[name] = nn.Parameter(empty(p), requires_grad=p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = empty(b)


def load_weights(model: Transformer, keys: dict[str, Path]) -> None:
    """Copies every checkpoint tensor into `model`, checking names and shapes."""
    params: dict[str, torch.Tensor] = dict(model.named_parameters())
    params.update((n, b) for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] in ("bias", "tid2eid"))
    targets = {k: checkpoint_target(k) for k in keys}
    scale_of: dict[tuple[str, int | None], str] = {}
    for k, t in targets.items():
        if t.kind == "scale":
            scale_of[(t.name, t.expert)] = k
    problems: list[str] = []
    filled: dict[str, set[int] | bool] = {}
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
        try:
            raw, scale = read(k), read(scale_key) if scale_key else None
            problem = _dtype_problem(k, raw, scale, params[t.name], model.args.n_routed_experts)
            value = None if problem else _dequantize(k, raw, scale)
        except (ValueError, SafetensorError) as exc:
            problem = str(exc)
        if problem is None and value.is_floating_point() and not torch.isfinite(value).all():
            problem = f"{k}: {int((~torch.isfinite(value)).sum())} non-finite values (NaN/Inf): corrupt weights"
        if problem:
            problems.append(problem)
            continue
        _place(params, t, value, k, filled, problems)
    problems += [
        f"unexpected tensor {k} (a scale without its weight)" for k in scale_of.values() if k not in used_scales
    ]
    for name, p in params.items():
        got = filled.get(name)
        if name.endswith(_EXPERT_PARAMS):
            missing = sorted(set(range(p.shape[0])) - (got if isinstance(got, set) else set()))
            if missing:
                problems.append(f"missing experts {_short(missing)} of {name} ({p.shape[0]} experts)")
        elif not got:
            problems.append(f"missing tensor {name} {tuple(p.shape)}")
    if problems:
        raise CheckpointError("checkpoint does not match the model:\n  " + "\n  ".join(problems))


def _short(items: list[int]) -> str:
    return str(items[:8])[:-1] + (", ...]" if len(items) > 8 else "]")


def _dtype_problem(
    key: str, raw: torch.Tensor, scale: torch.Tensor | None, param: torch.Tensor, n_experts: int
) -> str | None:
    """Why a stored tensor cannot fill `param`, or None (a quantised weight without a scale is
    left to `_dequantize`, which says so)."""
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


def _place(params, t: Target, value: torch.Tensor, key: str, filled: dict, problems: list[str]) -> None:
    param = params[t.name]

    def check(dst: torch.Tensor, src: torch.Tensor) -> bool:
        if tuple(src.shape) != tuple(dst.shape):
            problems.append(f"{key}: checkpoint shape {tuple(src.shape)}, model expects {tuple(dst.shape)}")
            return False
        return True

    with torch.no_grad():
        if t.kind == "gate_up":  # transformers packs w1 and w3 as [E, 2I, D]
            w3 = params[t.name[:-2] + "w3"]
            half = value.shape[1] // 2 if value.dim() == 3 else 0
            if value.dim() != 3 or not (check(param, value[:, :half]) and check(w3, value[:, half:])):
                return
            param.copy_(value[:, :half])
            w3.copy_(value[:, half:])
            filled[t.name] = filled[t.name[:-2] + "w3"] = set(range(param.shape[0]))
        elif t.expert is not None:
            if t.expert >= param.shape[0]:
                problems.append(f"{key}: expert {t.expert}, but the model has {param.shape[0]} experts")
            elif check(param[t.expert], value):
                param[t.expert].copy_(value)
                filled.setdefault(t.name, set()).add(t.expert)
        elif check(param, value):
            param.copy_(value.to(param.dtype))
            filled[t.name] = set(range(param.shape[0])) if t.name.endswith(_EXPERT_PARAMS) else True


def save_checkpoint(
    model: Transformer,
    out_dir: str | Path,
    weight_format: str = "fp32",
    expert_format: str | None = None,
    max_shard_bytes: int = 2 << 30,
) -> None:
    """Writes `model` in the official layout: config.json + safetensors shards (+ index).

    weight_format: "fp32", "bf16" or "fp8" (128x128 blocks) for 2-D matrices of the attention,
    shared experts and MTP projections (as DeepSeek quantises them); norms, mHC, compressor,
    gate, embed and head stay in fp32/bf16. expert_format: "fp4", "fp8" or None (as weights).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    expert_format = expert_format or weight_format
    args = model.args
    config = args.to_official_dict()
    if weight_format in ("bf16", "fp8"):
        config["weight_dtype"] = weight_format
    if expert_format in ("fp4", "fp8"):
        config["expert_dtype"] = expert_format
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]

    def put(name: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if sizes[-1] and sizes[-1] + nbytes > max_shard_bytes:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor.contiguous()
        sizes[-1] += nbytes

    state = model.state_dict()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        if name.endswith(_EXPERT_PARAMS):
            for e in range(tensor.shape[0]):
                key = official_expert_key(name, e)
                for k, v in _encode(key, tensor[e].float(), expert_format).items():
                    put(k, v)
        else:
            fmt = weight_format if _is_fp8_matrix(name) else ("bf16" if weight_format != "fp32" else "fp32")
            if tensor.dtype in (torch.long, torch.int32) or name.endswith(("_fn", "_base", "_scale", "attn_sink",
                                                                           ".ape", ".bias")):  # fmt: skip
                fmt = "keep"
            for k, v in _encode(name, tensor, fmt).items():
                put(k, v)
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, fname))
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _is_fp8_matrix(name: str) -> bool:
    """Matrices DeepSeek stores in FP8 (everything else in bf16/fp32)."""
    leaf = name.split(".")
    return (
        name.endswith(".weight")
        and (
            leaf[-2] in ("wq_a", "wq_b", "wkv", "wo_a", "wo_b", "e_proj", "h_proj")
            or (len(leaf) >= 3 and leaf[-3] == "shared_experts")
        )
        and "compressor" not in name
    )


def _encode(key: str, tensor: torch.Tensor, fmt: str) -> dict[str, torch.Tensor]:
    if fmt == "keep" or fmt == "fp32":
        return {key: tensor}
    if fmt == "bf16":
        return {key: tensor.to(torch.bfloat16)}
    base = key[: -len(".weight")]
    if fmt == "fp8":
        q, s = quantize_fp8_blocks(tensor)
        return {key: q, f"{base}.scale": s}
    if fmt == "fp4":
        q, s = quantize_fp4_packed(tensor)
        return {key: q, f"{base}.scale": s}
    raise ValueError(f"unknown weight format {fmt!r}")
