"""Random V4 weights in the official formats at any shape: as checkpoints written shard by shard,
or as a model built straight on a device.

For tests and benchmarks that need real V4 widths (a V4-Flash-shaped checkpoint is tens of GB
of FP4 experts and FP8 projections per few layers) without a real release: every tensor of
`checkpoint_formats.official_layout` is filled with random bytes of its stored format.
`write_random_checkpoint` writes them as real safetensors files, one shard in memory at a time;
`random_model` fills a kept-quantized model on the device directly (the GPU benchmarks: no
disk round trip for 15 GB of experts). FP8 bytes avoid e4m3's NaN codes; scales are ue8m0
exponents near 2^-9 (FP8) and 2^-6 (FP4) so that activations stay in range; norms are ones,
mixing biases zero; hash layers get K distinct experts per token.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from deepfim.engine.model.checkpoint_formats import DTYPES, official_layout, quantized_modules
from deepfim.engine.model.config import ModelArgs


def random_tensor(
    name: str, shape: tuple[int, ...], dtype: torch.dtype, args: ModelArgs, g: torch.Generator, fp4: bool = False
) -> torch.Tensor:
    """Random contents for one tensor of a stored dtype (see the module docstring), on g's device;
    `fp4`: a scale of packed FP4 experts."""
    device = g.device
    if dtype == torch.float8_e4m3fn:
        b = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g, device=device)
        b[(b & 0x7F) == 0x7F] ^= 1  # 0x7F / 0xFF are NaN
        return b.view(dtype)
    if dtype == torch.float8_e8m0fnu:
        low = 120 if fp4 else 117  # exponents 2^-7..2^-5 (FP4) and 2^-10..2^-8 (FP8), biased by 127
        return torch.randint(low, low + 3, shape, dtype=torch.uint8, generator=g, device=device).view(dtype)
    if dtype in (torch.int8, torch.uint8):
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g, device=device).view(dtype)
    if name.endswith("tid2eid"):
        ranks = torch.rand(shape[0], args.n_routed_experts, generator=g, device=device).argsort(-1)
        return ranks[:, : shape[1]].to(dtype).contiguous()
    if name.endswith(("norm.weight", "_scale")):
        return torch.ones(shape, dtype=dtype, device=device)
    if name.endswith(("_base", ".ape", "attn_sink", ".bias")):
        return torch.zeros(shape, dtype=dtype, device=device)
    return (torch.randn(shape, generator=g, device=device) * 0.02).to(dtype)


def write_random_checkpoint(
    args: ModelArgs,
    out_dir: str | Path,
    seed: int = 0,
    weight_format: str = "fp8",
    expert_format: str = "fp4",
    max_shard_bytes: int = 1 << 30,
) -> Path:
    """Writes config.json, shards and their index for random weights of shape `args`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = official_layout(args, weight_format, expert_format)
    shards: list[list[str]] = [[]]
    size = 0
    for name, info in layout.items():
        if size and size + info.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += info.nbytes
    g = torch.Generator().manual_seed(seed)
    weight_map = {}
    for i, names in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {
            n: random_tensor(n, layout[n].shape, DTYPES[layout[n].dtype], args, g, ".experts." in n) for n in names
        }
        save_file(tensors, str(out / fname), {"format": "pt"})
        weight_map.update(dict.fromkeys(names, fname))
    index = {"metadata": {"total_size": sum(i.nbytes for i in layout.values())}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    config = args.to_official_dict()
    config["weight_dtype"] = weight_format if weight_format != "fp4" else "fp8"
    config["expert_dtype"] = expert_format
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def random_model(args: ModelArgs, device: str | torch.device, dtype: torch.dtype = torch.bfloat16, seed: int = 0):
    """A model of shape `args` with FP8 linears and FP4 experts kept quantized (as `load_model(...,
    keep_quantized=True)` holds an official checkpoint), random weights generated on `device`."""
    from deepfim.engine.model.quantized import keep_quantized, materialize
    from deepfim.engine.model.transformer import Transformer

    fp8, fp4 = quantized_modules(official_layout(args))
    with torch.device("meta"):
        model = Transformer(args)
    keep_quantized(model, fp8, fp4, torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)
    materialize(model, torch.device(device), dtype)
    model.reset_buffers()
    g = torch.Generator(device=device).manual_seed(seed)
    persistent = model.state_dict()
    with torch.no_grad():
        for name, t in persistent.items():
            t.copy_(random_tensor(name, tuple(t.shape), t.dtype, args, g, name.endswith(("w1_scale", "w2_scale",
                                                                                          "w3_scale"))))  # fmt: skip
    return model.eval()
