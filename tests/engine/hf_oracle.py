"""transformers' DeepseekV4ForCausalLM as an independent oracle for our engine (tests only)."""

from __future__ import annotations

import torch

from deepfim.engine.model.config import ModelArgs


def hf_config(args: ModelArgs):
    from transformers import DeepseekV4Config

    return DeepseekV4Config(
        vocab_size=args.vocab_size, hidden_size=args.dim, moe_intermediate_size=args.moe_inter_dim,
        num_hidden_layers=args.n_layers, num_attention_heads=args.n_heads, head_dim=args.head_dim,
        qk_rope_head_dim=args.rope_head_dim, q_lora_rank=args.q_lora_rank, o_groups=args.o_groups,
        o_lora_rank=args.o_lora_rank, n_routed_experts=args.n_routed_experts,
        num_experts_per_tok=args.n_activated_experts, n_shared_experts=args.n_shared_experts,
        routed_scaling_factor=args.route_scale, index_n_heads=args.index_n_heads,
        index_head_dim=args.index_head_dim, index_topk=args.index_topk,
        layer_types=[kind.value for kind in args.layer_kinds], compress_rates=_compress_rates(args),
        num_hash_layers=args.n_hash_layers,
        sliding_window=args.window_size, swiglu_limit=args.swiglu_limit, rope_theta=args.rope_theta,
        compress_rope_theta=args.compress_rope_theta, rms_norm_eps=args.norm_eps,
        hc_mult=args.hc_mult, hc_sinkhorn_iters=args.hc_sinkhorn_iters, hc_eps=args.hc_eps,
        num_nextn_predict_layers=args.n_mtp_layers,
        rope_scaling={"type": "yarn", "factor": args.rope_factor,
                      "original_max_position_embeddings": args.original_seq_len,
                      "beta_fast": args.beta_fast, "beta_slow": args.beta_slow},
    )  # fmt: skip


def _compress_rates(args: ModelArgs) -> dict[str, int]:
    """transformers keeps one ratio per layer kind (CSA, HCA)."""
    rates: dict[str, int] = {}
    for kind, ratio in zip(args.layer_kinds, args.compress_ratios, strict=True):
        if ratio:
            assert rates.setdefault(kind.value, ratio) == ratio, "transformers has one ratio per layer kind"
    return {"compressed_sparse_attention": 4, "heavily_compressed_attention": 128, **rates}


def random_hf_model(args: ModelArgs, seed: int = 0):
    """A transformers V4 model whose every parameter is random, including the ones its own
    init leaves degenerate (sinks, position_bias, hc base, e_score_correction_bias, tid2eid)."""
    from transformers import DeepseekV4ForCausalLM

    torch.manual_seed(seed)
    model = DeepseekV4ForCausalLM(hf_config(args)).float().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "layernorm.weight")):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith((".scale", "hc_scale")):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith(("sinks", "position_bias", ".base", "hc_base")):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (p.shape[-1] ** -0.5))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("tid2eid"):
                e, k = args.n_routed_experts, args.n_activated_experts
                b.copy_(torch.stack([torch.randperm(e, generator=g)[:k] for _ in range(b.shape[0])]))
    return model


@torch.no_grad()
def hf_prefill_logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, use_cache=False).logits


@torch.no_grad()
def hf_decode_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """Token-by-token logits with transformers' own V4 cache."""
    out = model(input_ids=ids[:, :1], use_cache=True)
    pkv, logits = out.past_key_values, [out.logits]
    for i in range(1, ids.shape[1]):
        out = model(input_ids=ids[:, i : i + 1], past_key_values=pkv, use_cache=True)
        pkv = out.past_key_values
        logits.append(out.logits)
    return torch.cat(logits, 1)
