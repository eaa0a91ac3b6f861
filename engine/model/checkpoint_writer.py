"""Writing V4 checkpoints in the official layout: config.json + safetensors shards (+ index).

`save_checkpoint` stores the attention, shared-expert and MTP projections in FP8 (128 x 128 blocks)
or bf16 / fp32, the routed experts in FP4 (1 x 32 blocks), FP8 or as the weights, as DeepSeek
quantises them; `stored_format` is that rule for one tensor (also what `checkpoint_formats.
official_layout` predicts for a config).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from deepfim.engine.model.checkpoint_names import official_expert_key
from deepfim.kernels.quant.ref import quantize_fp4_packed, quantize_fp8_blocks

_EXPERT_PARAMS = (".ffn.w1", ".ffn.w2", ".ffn.w3")
_KEPT_AS_IS = ("_fn", "_base", "_scale", "attn_sink", ".ape", ".bias")


def stored_format(name: str, tensor: torch.Tensor, weight_format: str) -> str:
    """How a non-expert tensor is stored: "keep" (as it is: fp32 vectors, integer tables), or the
    weight format for the FP8-able matrices, bf16 (fp32 when weight_format is fp32) for the rest."""
    if tensor.dtype in (torch.long, torch.int32) or name.endswith(_KEPT_AS_IS):
        return "keep"
    return weight_format if _is_fp8_matrix(name) else ("bf16" if weight_format != "fp32" else "fp32")


def save_checkpoint(
    model,
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
    from deepfim.engine.model.quantized import is_quantized

    if is_quantized(model):
        raise ValueError("save_checkpoint needs a model with dense weights (this one keeps them quantized)")
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
            for k, v in _encode(name, tensor, stored_format(name, tensor, weight_format)).items():
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
