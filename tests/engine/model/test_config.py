"""ModelArgs from both config.json forms; unknown and contradictory fields are named."""

from __future__ import annotations

import json

import pytest

from deepfim.engine.model.config import ConfigError, LayerKind, ModelArgs, tiny_args

FLASH_OFFICIAL = {
    "vocab_size": 129280, "dim": 4096, "moe_inter_dim": 2048, "n_layers": 43, "n_hash_layers": 3,
    "n_heads": 64, "n_routed_experts": 256, "n_shared_experts": 1, "n_activated_experts": 6,
    "score_func": "sqrtsoftplus", "route_scale": 1.5, "swiglu_limit": 10.0, "q_lora_rank": 1024,
    "head_dim": 512, "rope_head_dim": 64, "norm_eps": 1e-6, "o_groups": 8, "o_lora_rank": 1024,
    "window_size": 128, "compress_ratios": [0, 0] + [4, 128] * 20 + [4, 0],
    "compress_rope_theta": 160000.0, "original_seq_len": 65536, "rope_theta": 10000.0, "rope_factor": 16,
    "beta_fast": 32, "beta_slow": 1, "index_n_heads": 64, "index_head_dim": 128, "index_topk": 512,
    "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "dtype": "fp8", "scale_fmt": "ue8m0",
    "expert_dtype": "fp4", "max_batch_size": 4, "max_seq_len": 1048576,
}  # fmt: skip

FLASH_HF = {
    "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4", "hidden_size": 4096,
    "moe_intermediate_size": 2048, "num_hidden_layers": 43, "num_attention_heads": 64,
    "num_key_value_heads": 1, "head_dim": 512, "q_lora_rank": 1024, "qk_rope_head_dim": 64,
    "o_groups": 8, "o_lora_rank": 1024, "n_routed_experts": 256, "n_shared_experts": 1,
    "num_experts_per_tok": 6, "topk_method": "noaux_tc", "scoring_func": "sqrtsoftplus",
    "norm_topk_prob": True, "routed_scaling_factor": 1.5, "index_topk": 512, "index_n_heads": 64,
    "index_head_dim": 128, "num_hash_layers": 3, "num_nextn_predict_layers": 1, "sliding_window": 128,
    "swiglu_limit": 10.0, "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "rms_norm_eps": 1e-6,
    "vocab_size": 129280, "max_position_embeddings": 1048576, "rope_theta": 10000, "compress_rope_theta": 160000,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 16, "original_max_position_embeddings": 65536,
                     "type": "yarn"},
    "compress_ratios": [0, 0] + [4, 128] * 20 + [4, 0], "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
    "bos_token_id": 0, "eos_token_id": 1, "use_cache": True, "transformers_version": "4.57.1",
}  # fmt: skip


def test_official_and_hf_forms_describe_the_same_flash_model():
    official = ModelArgs.from_dict(FLASH_OFFICIAL)
    hf = ModelArgs.from_dict(FLASH_HF)
    for field in ("dim", "n_layers", "n_heads", "head_dim", "rope_head_dim", "q_lora_rank", "o_groups",
                  "o_lora_rank", "window_size", "compress_ratios", "n_mtp_layers", "index_topk", "n_routed_experts",
                  "n_activated_experts", "moe_inter_dim", "route_scale", "n_hash_layers", "rope_factor",
                  "compress_rope_theta", "original_seq_len", "weight_dtype", "quant_sim"):  # fmt: skip
        assert getattr(official, field) == getattr(hf, field), field
    assert official.compress_ratios[:4] == (0, 0, 4, 128) and len(official.compress_ratios) == 43
    assert official.n_mtp_layers == 1 and official.expert_dtype == "fp4" and official.quant_sim


def test_hf_nested_rope_parameters_and_layer_types(tmp_path):
    from transformers import DeepseekV4Config

    cfg = DeepseekV4Config(num_hidden_layers=4, compress_ratios=[0, 4, 128, 4], num_hash_layers=2,
                           rope_scaling={"type": "yarn", "factor": 16, "original_max_position_embeddings": 65536,
                                         "beta_fast": 32, "beta_slow": 1})  # fmt: skip
    cfg.save_pretrained(tmp_path)
    args = ModelArgs.from_file(tmp_path)  # layer_types, mlp_layer_types, nested rope_parameters
    assert args.compress_ratios == (0, 4, 128, 4)
    assert args.n_hash_layers == 2 and args.rope_factor == 16 and args.compress_rope_theta == 160000


def test_unknown_fields_are_named():
    with pytest.raises(ConfigError, match=r"unknown config fields \['frobnicate'\]"):
        ModelArgs.from_dict({**FLASH_OFFICIAL, "frobnicate": 1})
    with pytest.raises(ConfigError, match="kv_groups"):
        ModelArgs.from_dict({**FLASH_HF, "kv_groups": 2})


@pytest.mark.parametrize(
    "patch, words",
    [
        ({"layer_types": ["sliding_attention"] * 43}, "contradicts compress_ratios"),
        ({"mlp_layer_types": ["hash_moe"] * 2 + ["moe"] * 41}, "num_hash_layers=3 contradicts mlp_layer_types"),
        ({"partial_rotary_factor": 0.25}, "qk_rope_head_dim=64 contradicts partial_rotary_factor"),
        ({"num_key_value_heads": 8}, "num_key_value_heads=8"),
        ({"tie_word_embeddings": True}, "tie_word_embeddings"),
        ({"num_experts_per_tok": 300}, "n_activated_experts=300"),
    ],
)
def test_contradictions_are_named(patch, words):
    with pytest.raises(ConfigError, match=words):
        ModelArgs.from_dict({**FLASH_HF, **patch})


def test_official_mtp_ratios_must_be_sliding():
    bad = {**FLASH_OFFICIAL, "compress_ratios": FLASH_OFFICIAL["compress_ratios"][:-1] + [4]}
    with pytest.raises(ConfigError, match="MTP"):
        ModelArgs.from_dict(bad)


def test_round_trip_through_official_file(tmp_path):
    args = ModelArgs.from_dict(FLASH_OFFICIAL)
    args.save(tmp_path / "config.json")
    assert ModelArgs.from_file(tmp_path) == args
    assert json.loads((tmp_path / "config.json").read_text())["compress_ratios"][-1] == 0


def test_unreadable_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable JSON"):
        ModelArgs.from_file(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        ModelArgs.from_file(tmp_path / "missing")


def test_layer_kinds_are_named_and_any_compression_ratio_is_accepted(tmp_path):
    from transformers import DeepseekV4Config

    official = ModelArgs.from_dict({**FLASH_OFFICIAL, "compress_ratios": [0, 16, 4, 128] * 10 + [0, 4, 16, 0]})
    assert official.layer_kinds[:4] == (LayerKind.SLIDING, LayerKind.HCA, LayerKind.CSA, LayerKind.HCA)
    assert official.compress_ratios[1] == 16 and official.layer_kind(official.n_layers) is LayerKind.SLIDING
    types = ["sliding_attention", "heavily_compressed_attention", "compressed_sparse_attention", "sliding_attention"]
    rates = {"compressed_sparse_attention": 8, "heavily_compressed_attention": 16}
    cfg = DeepseekV4Config(num_hidden_layers=4, layer_types=types, num_hash_layers=1, compress_rates=rates)
    cfg.save_pretrained(tmp_path)
    args = ModelArgs.from_file(tmp_path)
    assert args.compress_ratios == (0, 16, 8, 0)
    assert args.layer_kinds == (LayerKind.SLIDING, LayerKind.HCA, LayerKind.CSA, LayerKind.SLIDING)
    args.save(tmp_path / "official.json")  # the official form cannot say "CSA of ratio 8": it keeps the kinds
    assert ModelArgs.from_file(tmp_path / "official.json") == args


@pytest.mark.parametrize(
    "ratios, kinds, words",
    [
        ((0, 1, 4, 128), None, "compresses nothing"),
        ((0, 0, 4, 128), ("sliding_attention", "compressed_sparse_attention") * 2, "needs compress ratio 0"),
        ((0, -4, 4, 128), None, "non-negative integer"),
        ((0, 4, 4, 128), ("dense",) * 4, "must name"),
    ],
)
def test_bad_layer_schedules_are_named(ratios, kinds, words):
    extra = {} if kinds is None else {"layer_kinds": kinds}
    with pytest.raises(ConfigError, match=words):
        tiny_args(compress_ratios=ratios, **extra)
