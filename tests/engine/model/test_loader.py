"""Checkpoint loading: layouts, shards, FP8/FP4 storage, and clear errors for bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from deepfim.engine.model.config import ModelArgs
from deepfim.engine.model.loader import CheckpointError, load_model, save_checkpoint
from deepfim.kernels.quant.ref import dequant_fp4_packed, dequant_fp8_blocks, quantize_fp4_packed, quantize_fp8_blocks


def _tensors(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _logits(model, n=40, seed=0):
    ids = torch.randint(0, model.args.vocab_size, (1, n), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(ids).logits


def test_official_layout_round_trip_is_exact(tiny_model, tiny_checkpoint):
    loaded = load_model(tiny_checkpoint)
    assert loaded.args == tiny_model.args
    for name, p in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], p), name
    names = _tensors(tiny_checkpoint / "model.safetensors").keys()
    expected = {
        "embed.weight", "head.weight", "hc_head_fn", "mtp.0.e_proj.weight", "layers.0.ffn.gate.tid2eid",
        "layers.3.ffn.gate.bias", "layers.1.attn.indexer.compressor.ape", "layers.2.ffn.experts.7.w2.weight",
    }  # fmt: skip
    assert expected <= set(names)


def test_sharded_checkpoint_with_index(tiny_model, tmp_path):
    save_checkpoint(tiny_model, tmp_path, max_shard_bytes=400_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    assert torch.equal(_logits(load_model(tmp_path)), _logits(tiny_model))


def test_fp8_weights_and_fp4_experts_dequantise_to_their_stored_values(tiny_model, tmp_path):
    save_checkpoint(tiny_model, tmp_path, weight_format="fp8", expert_format="fp4")
    raw = _tensors(tmp_path / "model.safetensors")
    assert raw["layers.1.attn.wq_b.weight"].dtype == torch.float8_e4m3fn
    assert raw["layers.1.attn.wq_b.scale"].dtype == torch.float8_e8m0fnu
    assert raw["layers.1.ffn.experts.3.w1.weight"].dtype == torch.int8  # two e2m1 per byte
    loaded = load_model(tmp_path)
    params = dict(loaded.named_parameters())
    checked = 0
    for key in raw:
        if not key.endswith(".scale") or key.endswith(("hc_attn_scale", "hc_ffn_scale", "hc_head_scale")):
            continue
        weight = raw[key[: -len(".scale")] + ".weight"]
        if ".experts." in key:  # layers.L.ffn.experts.E.wN.scale -> stacked layers.L.ffn.wN[E]
            prefix, expert, w = key[: key.index(".experts.")], int(key.split(".")[-3]), key.split(".")[-2]
            got, expect = params[f"{prefix}.{w}"][expert], dequant_fp4_packed(weight, raw[key])
        else:
            got, expect = params[key[: -len(".scale")] + ".weight"], dequant_fp8_blocks(weight, raw[key])
        assert torch.equal(got, expect), key
        checked += 1
    assert checked > 100
    assert torch.isfinite(_logits(loaded)).all()


def test_quantisers_are_inverse_to_dequantisers_on_representable_values():
    w = torch.randn(200, 300)
    q, s = quantize_fp8_blocks(w)
    once = dequant_fp8_blocks(q, s)
    assert torch.equal(dequant_fp8_blocks(*quantize_fp8_blocks(once)), once)
    w = torch.randn(64, 128)
    q, s = quantize_fp4_packed(w)
    once = dequant_fp4_packed(q, s)
    assert torch.equal(dequant_fp4_packed(*quantize_fp4_packed(once)), once)


def _rewrite(ckpt, edit):
    tensors = _tensors(ckpt / "model.safetensors")
    edit(tensors)
    save_file(tensors, str(ckpt / "model.safetensors"))


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_tensor_is_named_with_its_shape(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    _rewrite(ckpt, lambda t: t.pop("layers.2.attn.compressor.wkv.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor layers\.2\.attn\.compressor\.wkv\.weight \(32, 64\)"):
        load_model(ckpt)


def test_missing_expert_is_named(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    _rewrite(ckpt, lambda t: t.pop("layers.3.ffn.experts.5.w3.weight"))
    with pytest.raises(CheckpointError, match=r"missing experts \[5\] of layers\.3\.ffn\.w3"):
        load_model(ckpt)


def test_unexpected_and_misshaped_tensors_are_named(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")

    def edit(t):
        t["layers.0.attn.bogus.weight"] = torch.zeros(3)
        t["layers.1.attn.wkv.weight"] = torch.zeros(16, 64)

    _rewrite(ckpt, edit)
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    message = str(err.value)
    assert "unexpected tensor layers.0.attn.bogus.weight" in message
    assert "layers.1.attn.wkv.weight: checkpoint shape (16, 64), model expects (32, 64)" in message


def test_corrupt_or_absent_files_are_clear_errors(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(ckpt)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        load_model(empty)


@pytest.mark.slow
def test_flash_shaped_official_checkpoint_loads_and_runs(tmp_path):
    """True V4-Flash attention and per-expert shapes (FP8 weights, FP4 experts), 2 layers, 4 experts."""
    flash = json.loads(
        json.dumps(
            {
                "vocab_size": 1024,
                "dim": 4096,
                "moe_inter_dim": 2048,
                "n_layers": 2,
                "n_hash_layers": 1,
                "n_heads": 64,
                "n_routed_experts": 4,
                "n_shared_experts": 1,
                "n_activated_experts": 2,
                "score_func": "sqrtsoftplus",
                "route_scale": 1.5,
                "swiglu_limit": 10.0,
                "q_lora_rank": 1024,
                "head_dim": 512,
                "rope_head_dim": 64,
                "norm_eps": 1e-6,
                "o_groups": 8,
                "o_lora_rank": 1024,
                "window_size": 128,
                "compress_ratios": [4, 128],
                "compress_rope_theta": 160000.0,
                "original_seq_len": 65536,
                "rope_theta": 10000.0,
                "rope_factor": 16,
                "beta_fast": 32,
                "beta_slow": 1,
                "index_n_heads": 64,
                "index_head_dim": 128,
                "index_topk": 512,
                "hc_mult": 4,
                "hc_sinkhorn_iters": 20,
                "hc_eps": 1e-6,
                "dtype": "fp8",
                "scale_fmt": "ue8m0",
                "expert_dtype": "fp4",
            }  # fmt: skip
        )
    )
    args = ModelArgs.from_dict(flash)
    g = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in _official_shapes(args).items():
        w = torch.randn(shape, generator=g) * (shape[-1] ** -0.5 if len(shape) > 1 else 0.1)
        if ".experts." in name and name.endswith(".weight"):
            q, s = quantize_fp4_packed(w)
            tensors[name], tensors[name[:-7] + ".scale"] = q, s
        elif name.endswith((".wq_a.weight", ".wq_b.weight", ".wkv.weight", ".wo_a.weight", ".wo_b.weight")) or (
            ".shared_experts." in name
        ):
            q, s = quantize_fp8_blocks(w)
            tensors[name], tensors[name[:-7] + ".scale"] = q, s
        elif name.endswith("tid2eid"):
            tensors[name] = torch.stack([torch.randperm(4, generator=g)[:2] for _ in range(1024)]).to(torch.int32)
        elif name.endswith("norm.weight"):
            tensors[name] = torch.ones(shape, dtype=torch.bfloat16)
        else:
            tensors[name] = w.to(torch.bfloat16) if len(shape) > 1 and "hc_" not in name else w
    # spot-check the table of ../shared/design/v4-model.md §8.2
    assert tuple(tensors["layers.0.attn.wq_b.weight"].shape) == (32768, 1024)
    assert tuple(tensors["layers.0.attn.wq_b.scale"].shape) == (256, 8)
    assert tuple(tensors["layers.0.attn.wo_a.scale"].shape) == (64, 32)
    assert tuple(tensors["layers.0.ffn.experts.0.w1.weight"].shape) == (2048, 2048)
    assert tuple(tensors["layers.0.ffn.experts.0.w1.scale"].shape) == (2048, 128)
    assert tuple(tensors["layers.1.ffn.experts.3.w2.scale"].shape) == (4096, 64)
    assert tuple(tensors["layers.0.attn.indexer.wq_b.scale"].shape) == (64, 8)
    half = len(tensors) // 2
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for fname, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / fname))
    del tensors
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(flash))
    model = load_model(tmp_path)
    assert model.args.quant_sim and model.args.weight_dtype == "fp8"
    state = model.new_state()
    with torch.no_grad():
        out = model(torch.arange(8).unsqueeze(0), state).logits
        step = model(torch.tensor([[9]]), state).logits
    assert out.shape == (1, 8, 1024) and torch.isfinite(out).all() and torch.isfinite(step).all()


def _official_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """Official tensor names and logical (dequantised) shapes of a model, from a meta-device build."""
    from deepfim.engine.model.checkpoint_names import official_expert_key
    from deepfim.engine.model.transformer import Transformer

    with torch.device("meta"):
        model = Transformer(args)
    shapes: dict[str, tuple[int, ...]] = {}
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if name.startswith("rotaries") or name.endswith("hadamard"):
            continue
        if name.endswith((".ffn.w1", ".ffn.w2", ".ffn.w3")):
            for e in range(p.shape[0]):
                shapes[official_expert_key(name, e)] = tuple(p.shape[1:])
        else:
            shapes[name] = tuple(p.shape)
    return shapes
