"""Weights kept in checkpoint form (FP8 linears, FP4 experts) against the dequantize-at-load model,
and the memory planner against the bytes a loaded model actually holds."""

from __future__ import annotations

import json

import pytest
import torch
from engine_fixtures import randomize
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from deepfim.engine.model import memory_plan
from deepfim.engine.model.checkpoint_formats import official_layout, read_headers
from deepfim.engine.model.config import ModelArgs, tiny_args
from deepfim.engine.model.decode_step import DecodeStep
from deepfim.engine.model.loader import CheckpointError, load_model, save_checkpoint, shard_files
from deepfim.engine.model.quantized import QuantLinear, is_quantized, resident_bytes
from deepfim.engine.model.synthetic import write_random_checkpoint
from deepfim.engine.model.transformer import Transformer
from deepfim.engine.model.v4_configs import FLASH

# FP8 blocks are 128 x 128, so widths of 128 give whole blocks and groups of wo_a of 128 rows
WIDE = dict(vocab_size=512, dim=128, moe_inter_dim=64, q_lora_rank=128, head_dim=64, rope_head_dim=16,
            index_head_dim=64, o_lora_rank=128, n_hash_layers=1)  # fmt: skip


@pytest.fixture(scope="module")
def fp8_checkpoint(tmp_path_factory):
    model = randomize(Transformer(tiny_args(**WIDE)), seed=3).eval()
    out = tmp_path_factory.mktemp("fp8_fp4")
    save_checkpoint(model, out, weight_format="fp8", expert_format="fp4")
    return out


def _run(model, ids, steps=3):
    """Prefill then greedy decode steps through a state: the logits of every call."""
    state, outs = model.new_state(), []
    with torch.inference_mode():
        logits = model(ids, state, logits="last").logits
        outs.append(logits)
        for _ in range(steps):
            logits = model(logits[:, -1].argmax(-1, keepdim=True), state, logits="last").logits
            outs.append(logits)
    return torch.cat(outs, 1)


def test_kept_quantized_model_gives_the_dequantized_models_logits(fp8_checkpoint):
    dense = load_model(fp8_checkpoint)
    kept = load_model(fp8_checkpoint, keep_quantized=True)
    assert not is_quantized(dense) and is_quantized(kept)
    attn, ffn = kept.layers[1].attn, kept.layers[1].ffn
    assert isinstance(attn.wq_b, QuantLinear) and isinstance(attn.wo_a, QuantLinear)
    assert attn.wq_b.weight.dtype == torch.float8_e4m3fn and attn.wq_b.scale.dtype == torch.float8_e8m0fnu
    assert ffn.fp4 and ffn.w1.dtype == torch.int8 and tuple(ffn.w1.shape) == (8, 64, 64)
    assert isinstance(kept.mtp[0].e_proj, QuantLinear) and kept.embed.weight.dtype == torch.float32
    assert resident_bytes(kept) < 0.45 * resident_bytes(dense)
    assert DecodeStep.for_model(kept) is None  # the C step reads fp32 matrices: kept models take the module path
    ids = torch.randint(0, 512, (1, 45), generator=torch.Generator().manual_seed(0))
    want, got = _run(dense, ids), _run(kept, ids)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()


def test_kept_quantized_with_bf16_matrices_stays_close(tmp_path):
    # index_topk >= the entries a 40-token prompt forms: bf16 rounding cannot flip the top-k choice
    model = randomize(Transformer(tiny_args(**WIDE, index_topk=16)), seed=4).eval()
    save_checkpoint(model, tmp_path, weight_format="fp8", expert_format="fp4")
    dense = load_model(tmp_path)
    kept = load_model(tmp_path, dtype=torch.bfloat16, keep_quantized=True)
    assert kept.embed.weight.dtype == torch.bfloat16 and kept.layers[1].attn.wq_b.compute_dtype == torch.bfloat16
    assert kept.layers[1].attn_norm.weight.dtype == torch.float32 and kept.layers[1].hc_attn_fn.dtype == torch.float32
    ids = torch.randint(0, 512, (1, 40), generator=torch.Generator().manual_seed(1))
    want, got = _run(dense, ids, 2), _run(kept, ids, 2)
    # bf16 inputs to every matmul: about 3 % noise on a random model (dense bf16 weights give 5 %)
    assert (got - want).abs().mean() < 0.05 * want.abs().mean()
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_planner_counts_what_dense_and_kept_models_hold(fp8_checkpoint):
    headers = read_headers(shard_files(fp8_checkpoint))
    for dtype, keep in ((torch.float32, False), (torch.bfloat16, False), (torch.float32, True)):
        model = load_model(fp8_checkpoint, dtype=dtype, keep_quantized=keep)
        plan = memory_plan.plan_weights(model.args, headers, dtype, keep)
        assert abs(resident_bytes(model) - plan.weight_bytes) <= 0.01 * plan.weight_bytes, (dtype, keep)


@pytest.mark.slow
def test_flash_shaped_checkpoint_kept_quantized_is_what_the_planner_says(tmp_path):
    """True V4-Flash widths (D 4096, 64 heads x 512, q/o rank 1024, experts 2048 wide), a CSA and an
    HCA layer, 24 experts (so experts weigh about as much against the rest as in V4-Flash) and a
    1024-token vocabulary: random FP8 / FP4 weights in the official layout, written as shards."""
    args = ModelArgs.from_dict({**FLASH, "n_layers": 2, "compress_ratios": [4, 128], "n_hash_layers": 1,
                                "n_routed_experts": 24, "vocab_size": 1024})  # fmt: skip
    ckpt = write_random_checkpoint(args, tmp_path, max_shard_bytes=256 << 20)
    headers = read_headers(shard_files(ckpt))
    assert len(shard_files(ckpt)) > 2 and headers == official_layout(args)
    assert headers["layers.0.attn.wq_b.weight"].shape == (32768, 1024)
    assert headers["layers.0.ffn.experts.5.w2.weight"].shape == (4096, 1024)
    model = load_model(ckpt, dtype=torch.bfloat16, keep_quantized=True)
    resident = resident_bytes(model)
    kept_plan = memory_plan.plan_weights(model.args, headers, torch.bfloat16, keep_quantized=True)
    bf16_plan = memory_plan.plan_weights(model.args, headers, torch.bfloat16, keep_quantized=False)
    assert abs(resident - kept_plan.weight_bytes) <= 0.05 * kept_plan.weight_bytes
    assert resident <= bf16_plan.weight_bytes / 3
    wq_b = model.layers[0].attn.wq_b
    assert wq_b.weight.dtype == torch.float8_e4m3fn and wq_b.weight.data_ptr() != 0
    shard = json.loads((ckpt / "model.safetensors.index.json").read_text())["weight_map"]["layers.0.attn.wq_b.weight"]
    with safe_open(str(ckpt / shard), "pt") as f:
        stored = f.get_tensor("layers.0.attn.wq_b.weight")
    assert torch.equal(wq_b.weight.view(torch.uint8), stored.view(torch.uint8))  # the checkpoint's bytes


def test_corrupt_fp8_bytes_are_named_when_kept(fp8_checkpoint, tmp_path):
    tensors = load_file(str(fp8_checkpoint / "model.safetensors"))
    bad = tensors["layers.2.attn.wo_b.weight"].view(torch.uint8).clone()
    bad[0, :3] = 0x7F  # e4m3's NaN code
    tensors["layers.2.attn.wo_b.weight"] = bad.view(torch.float8_e4m3fn)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((fp8_checkpoint / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"layers\.2\.attn\.wo_b\.weight: 3 NaN codes"):
        load_model(tmp_path, keep_quantized=True)
    with pytest.raises(CheckpointError, match=r"layers\.2\.attn\.wo_b\.weight: 3 non-finite"):
        load_model(tmp_path)


def test_a_kept_model_is_not_saved_as_if_dense(fp8_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="keeps them quantized"):
        save_checkpoint(load_model(fp8_checkpoint, keep_quantized=True), tmp_path)


def test_the_planner_refuses_with_its_figures():
    args = ModelArgs.from_dict(dict(FLASH))
    plan = memory_plan.plan(args, official_layout(args), "cuda:0", torch.bfloat16, True, context=65536)
    assert 148 * memory_plan.GiB < plan.weight_bytes < 149 * memory_plan.GiB  # V4-Flash: 148.6 GiB
    memory_plan.check_fits(plan, torch.device("cuda:0"), available=200 * memory_plan.GiB)
    with pytest.raises(memory_plan.MemoryPlanError, match=r"does not fit cuda:0: it needs 150\.\d\d GiB .* 139\.00"):
        memory_plan.check_fits(plan, torch.device("cuda:0"), available=139 * memory_plan.GiB)
