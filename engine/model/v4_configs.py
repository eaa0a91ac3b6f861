"""The released DeepSeek-V4 shapes (official `inference/config.json` form, v4-model.md §1), so the
memory planner and the GPU benchmarks can size V4-Flash and V4-Pro without their weights."""

from __future__ import annotations

from deepfim.engine.model.config import ModelArgs

_COMMON = {
    "vocab_size": 129280, "n_shared_experts": 1, "n_activated_experts": 6, "score_func": "sqrtsoftplus",
    "swiglu_limit": 10.0, "head_dim": 512, "rope_head_dim": 64, "norm_eps": 1e-6, "o_lora_rank": 1024,
    "window_size": 128, "compress_rope_theta": 160000.0, "original_seq_len": 65536, "rope_theta": 10000.0,
    "rope_factor": 16, "beta_fast": 32, "beta_slow": 1, "index_n_heads": 64, "index_head_dim": 128, "hc_mult": 4,
    "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "dtype": "fp8", "scale_fmt": "ue8m0", "expert_dtype": "fp4",
    "n_hash_layers": 3, "max_seq_len": 1048576,
}  # fmt: skip

FLASH = {
    **_COMMON, "dim": 4096, "moe_inter_dim": 2048, "n_layers": 43, "n_heads": 64, "n_routed_experts": 256,
    "route_scale": 1.5, "q_lora_rank": 1024, "o_groups": 8, "index_topk": 512,
    "compress_ratios": [0, 0] + [4, 128] * 20 + [4, 0],
}  # fmt: skip

PRO = {
    **_COMMON, "dim": 7168, "moe_inter_dim": 3072, "n_layers": 61, "n_heads": 128, "n_routed_experts": 384,
    "route_scale": 2.5, "q_lora_rank": 1536, "o_groups": 16, "index_topk": 1024,
    "compress_ratios": [128, 128] + [4, 128] * 29 + [4, 0],
}  # fmt: skip

KNOWN = {"v4-flash": FLASH, "v4-pro": PRO}


def known_args(name: str) -> ModelArgs:
    """ModelArgs of "v4-flash" or "v4-pro"."""
    if name not in KNOWN:
        raise ValueError(f"unknown model {name!r}; known: {sorted(KNOWN)}")
    return ModelArgs.from_dict(dict(KNOWN[name]), source=name)
