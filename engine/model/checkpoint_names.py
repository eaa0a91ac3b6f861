"""Tensor names of V4 checkpoints in the layouts users have, mapped to our module names.

Our modules use the official DeepSeek inference names (`layers.N.attn.wq_a.weight`), with the
routed experts stacked per layer (`layers.N.ffn.w1` is [E, I, D]). Accepted layouts:

* official: `embed.weight`, `layers.N.attn.wq_a.weight` + `.scale`, `layers.N.ffn.experts.E.w1.weight`,
  `hc_head_fn`, `mtp.0.*`;
* what transformers' `save_pretrained` writes: the official leaf names under `model.`, except
  `model.embed_tokens.weight`, `model.hc_head.hc_fn`, and `attn.norm.weight` for the kv norm;
* transformers' module names: `model.layers.N.self_attn.q_a_proj.weight`,
  `mlp.experts.gate_up_proj` ([E, 2I, D], split here), `lm_head.weight`, ...;
* legacy V3-style spellings: `weight_scale_inv`, `e_score_correction_bias`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# transformers module names -> official names, applied in order to a key without "model."
_HF_MODULE_RENAMES: list[tuple[str, str]] = [
    (r"^embed_tokens\.weight$", "embed.weight"),
    (r"^lm_head\.weight$", "head.weight"),
    (r"^hc_head\.hc_(fn|base|scale)$", r"hc_head_\1"),
    (r"\.self_attn\.compressor\.indexer\.scorer\.weights_proj\.", ".attn.indexer.weights_proj."),
    (r"\.self_attn\.compressor\.indexer\.q_b_proj\.", ".attn.indexer.wq_b."),
    (r"\.self_attn\.compressor\.indexer\.", ".attn.indexer.compressor."),
    (r"\.self_attn\.", ".attn."),
    (r"\.mlp\.", ".ffn."),
    (r"\.input_layernorm\.", ".attn_norm."),
    (r"\.post_attention_layernorm\.", ".ffn_norm."),
    (r"\.(attn|ffn)_hc\.(fn|base|scale)$", r".hc_\1_\2"),
    (r"\.attn\.sinks$", ".attn.attn_sink"),
    (r"\.position_bias$", ".ape"),
    (r"\.q_a_proj\.", ".wq_a."),
    (r"\.q_b_proj\.", ".wq_b."),
    (r"\.q_a_norm\.", ".q_norm."),
    (r"\.compressor\.kv_norm\.", ".compressor.norm."),
    (r"\.kv_proj\.", ".wkv."),
    (r"\.gate_proj\.", ".wgate."),
    (r"\.o_a_proj\.", ".wo_a."),
    (r"\.o_b_proj\.", ".wo_b."),
    (r"\.gate\.e_score_correction_bias$", ".gate.bias"),
    (r"\.shared_experts\.wgate\.", ".shared_experts.w1."),
    (r"\.shared_experts\.up_proj\.", ".shared_experts.w3."),
    (r"\.shared_experts\.down_proj\.", ".shared_experts.w2."),
]
_HF_MODULE_RENAMES_RE = [(re.compile(p), r) for p, r in _HF_MODULE_RENAMES]

_EXPERT_RE = re.compile(r"^(.*\.ffn)\.experts\.(\d+)\.(w[123])\.(weight|scale)$")
_PACKED_EXPERTS_RE = re.compile(r"^(.*\.ffn)\.experts\.(gate_up_proj|down_proj)$")


@dataclass(frozen=True)
class Target:
    """Where a checkpoint tensor goes.

    name: our parameter/buffer name; expert: index into a stacked expert tensor (or None);
    kind: "weight", "scale" (the block scale of `name`), "gate_up" (packed [E, 2I, D] to split
    into w1/w3) or "down" (packed [E, D, I]).
    """

    name: str
    expert: int | None = None
    kind: str = "weight"


def _official_name(key: str) -> str:
    """Normalises any accepted spelling to the official name (not yet expert-stacked)."""
    key = key.replace(".weight_scale_inv", ".scale").replace(".e_score_correction_bias", ".bias")
    if key.startswith("model."):
        key = key[len("model.") :]
        hf_modules = ".self_attn." in key or ".mlp." in key or key.startswith(("embed_tokens", "hc_head."))
        if hf_modules or ".input_layernorm." in key or "_hc." in key:
            for pattern, repl in _HF_MODULE_RENAMES_RE:
                key = pattern.sub(repl, key)
        else:
            # save_pretrained's reverse mapping names the attention kv norm `attn.norm`
            key = re.sub(r"\.attn\.norm\.weight$", ".attn.kv_norm.weight", key)
    elif key == "lm_head.weight":
        key = "head.weight"
    return key


def checkpoint_target(key: str) -> Target:
    """Maps one checkpoint tensor name to its place in our model."""
    name = _official_name(key)
    m = _PACKED_EXPERTS_RE.match(name)
    if m:
        return Target(f"{m.group(1)}.w1" if m.group(2) == "gate_up_proj" else f"{m.group(1)}.w2", None,
                      "gate_up" if m.group(2) == "gate_up_proj" else "down")  # fmt: skip
    m = _EXPERT_RE.match(name)
    if m:
        return Target(f"{m.group(1)}.{m.group(3)}", int(m.group(2)), "scale" if m.group(4) == "scale" else "weight")
    if name.endswith(".scale") and not name.endswith(("hc_attn_scale", "hc_ffn_scale", "hc_head_scale")):
        return Target(name[: -len(".scale")] + ".weight", None, "scale")
    return Target(name)


def official_expert_key(param_name: str, expert: int) -> str:
    """`layers.3.ffn.w1` + 5 -> `layers.3.ffn.experts.5.w1.weight` (for saving)."""
    prefix, w = param_name.rsplit(".", 1)
    return f"{prefix}.experts.{expert}.{w}.weight"
