"""`ModelArgs`: the shape of a DeepSeek-V4 model, read from a checkpoint's `config.json`.

Two forms exist in the wild and both are accepted:

* the official inference config (`inference/config.json`): `dim`, `n_layers`, `compress_ratios`
  (one entry per layer plus one per MTP block), `window_size`, `n_hash_layers`, `rope_factor`...
* the Hugging Face `DeepseekV4Config` form (`config.json` in the model repo, or what
  `save_pretrained` writes): `hidden_size`, `layer_types` / `compress_ratios`, `mlp_layer_types`,
  nested `rope_parameters` or flat `rope_scaling`...

Every field of either form is either mapped, checked against a value we require, or listed as
known-and-irrelevant; anything else is rejected with its name, as is any contradiction between
two fields that describe the same thing.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config.json that cannot describe a V4 model; the message names the fields."""


class LayerKind(enum.StrEnum):
    """The attention of a block (the names are transformers' `layer_types`).

    SLIDING: the 128-token window only. CSA (compressed sparse attention): the window plus
    entries pooled from *overlapping* windows of `ratio` tokens, of which a lightning indexer
    picks the top-k per query. HCA (heavily compressed attention): the window plus every entry
    pooled from non-overlapping windows of `ratio` tokens.
    """

    SLIDING = "sliding_attention"
    CSA = "compressed_sparse_attention"
    HCA = "heavily_compressed_attention"

    @classmethod
    def from_ratio(cls, ratio: int) -> LayerKind:
        """The official config's rule (DeepSeek's inference/model.py): 0 sliding, 4 CSA, else HCA."""
        return cls.SLIDING if ratio == 0 else cls.CSA if ratio == 4 else cls.HCA


@dataclass(frozen=True)
class ModelArgs:
    """Model hyper-parameters (official DeepSeek names).

    Attributes:
        vocab_size: vocabulary size (embedding and head rows).
        dim: hidden size D.
        n_layers: number of main transformer blocks.
        n_heads: attention query heads H.
        head_dim: per-head width d of q, and of the single shared K=V vector (512 in V4).
        rope_head_dim: trailing dims of each head that get RoPE (64 in V4).
        q_lora_rank: rank of the low-rank query path.
        o_groups: head groups of the grouped output projection.
        o_lora_rank: per-group width of the grouped output projection.
        window_size: sliding window of raw keys (128).
        compress_ratios: per main layer: 0 = sliding only, else the layer's compression ratio.
        layer_kinds: per main layer: SLIDING, CSA or HCA (`LayerKind`). Derived from
            `compress_ratios` when not given (0 sliding, 4 CSA, any other ratio HCA); the HF
            form names them (`layer_types`), so a CSA layer may have another ratio than 4.
        n_mtp_layers: multi-token-prediction blocks (sliding-only, non-hash MoE).
        index_n_heads / index_head_dim / index_topk: lightning indexer shape and top-k.
        n_routed_experts / n_activated_experts / n_shared_experts / moe_inter_dim: MoE shape.
        score_func: router score function ("sqrtsoftplus", "softmax", "sigmoid").
        route_scale: multiplier of the renormalised routing weights.
        n_hash_layers: the first layers route by a fixed token-id table (`tid2eid`).
        swiglu_limit: clamp of the SwiGLU gate/up activations (0 disables).
        hc_mult / hc_sinkhorn_iters / hc_eps: mHC streams, Sinkhorn iterations and epsilon.
        rope_theta: RoPE base of sliding-only layers (no YaRN).
        compress_rope_theta: RoPE base of compressed layers, with YaRN when rope_factor > 1.
        rope_factor / original_seq_len / beta_fast / beta_slow: YaRN frequency ramp.
        norm_eps: RMSNorm epsilon.
        max_seq_len: longest supported position.
        bos_token_id / eos_token_id: as in the checkpoint's tokenizer.
        weight_dtype: storage of dense weights ("bf16", "fp8", "fp32"); experts: `expert_dtype`.
        expert_dtype: storage of routed experts ("fp4", "fp8", or None = same as weight_dtype).
        quant_sim: simulate the reference's FP8/FP4 activation, KV and indexer rounding (QAT
            numerics). Off for checkpoints trained without it and for parity with transformers.
        fim_orders: FIM prompt orders the checkpoint was trained on ("psm", "spm").
    """

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    q_lora_rank: int
    o_groups: int
    o_lora_rank: int
    compress_ratios: tuple[int, ...]
    n_routed_experts: int
    n_activated_experts: int
    moe_inter_dim: int
    head_dim: int = 512
    rope_head_dim: int = 64
    window_size: int = 128
    n_mtp_layers: int = 0
    # indexer
    index_n_heads: int = 64
    index_head_dim: int = 128
    index_topk: int = 512
    # moe
    n_shared_experts: int = 1
    score_func: str = "sqrtsoftplus"
    route_scale: float = 1.0
    n_hash_layers: int = 0
    swiglu_limit: float = 10.0
    # mhc
    hc_mult: int = 4
    hc_sinkhorn_iters: int = 20
    hc_eps: float = 1e-6
    # rope
    rope_theta: float = 10000.0
    compress_rope_theta: float = 160000.0
    rope_factor: float = 1.0
    original_seq_len: int = 65536
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    norm_eps: float = 1e-6
    max_seq_len: int = 1048576
    bos_token_id: int = 0
    eos_token_id: int = 1
    # numerics and prompts
    weight_dtype: str = "fp32"
    expert_dtype: str | None = None
    quant_sim: bool = False
    fim_orders: tuple[str, ...] = ("psm",)
    layer_kinds: tuple[LayerKind, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if len(self.compress_ratios) != self.n_layers:
            problems.append(f"compress_ratios has {len(self.compress_ratios)} entries for n_layers={self.n_layers}")
        kinds = self.layer_kinds or tuple(LayerKind.from_ratio(r) for r in self.compress_ratios)
        try:
            kinds = tuple(LayerKind(k) for k in kinds)
        except ValueError:
            problems.append(f"layer_kinds {list(kinds)} must name {[k.value for k in LayerKind]}")
            kinds = tuple(LayerKind.from_ratio(r) for r in self.compress_ratios)
        object.__setattr__(self, "layer_kinds", kinds)
        if len(kinds) != len(self.compress_ratios):
            problems.append(f"layer_kinds has {len(kinds)} entries for {len(self.compress_ratios)} compress_ratios")
        for i, (kind, ratio) in enumerate(zip(kinds, self.compress_ratios, strict=False)):
            if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 0:
                problems.append(f"compress_ratios[{i}]={ratio!r} must be a non-negative integer")
            elif (kind is LayerKind.SLIDING) != (ratio == 0):
                problems.append(f"layer {i}: a {kind.value} layer needs compress ratio {'0' if ratio == 0 else '>= 2'}")
            elif ratio == 1:
                problems.append(f"compress_ratios[{i}]=1 compresses nothing (use 0 for a sliding layer, or >= 2)")
        if self.rope_head_dim % 2 or self.rope_head_dim > self.head_dim:
            problems.append(f"rope_head_dim={self.rope_head_dim} must be even and <= head_dim={self.head_dim}")
        if self.rope_head_dim > self.index_head_dim and LayerKind.CSA in kinds:
            problems.append(f"rope_head_dim={self.rope_head_dim} exceeds index_head_dim={self.index_head_dim}")
        if self.n_heads % self.o_groups:
            problems.append(f"n_heads={self.n_heads} not divisible by o_groups={self.o_groups}")
        if not 0 < self.n_activated_experts <= self.n_routed_experts:
            problems.append(
                f"n_activated_experts={self.n_activated_experts} must be in 1..n_routed_experts={self.n_routed_experts}"
            )
        if self.score_func not in ("sqrtsoftplus", "softmax", "sigmoid"):
            problems.append(f"score_func={self.score_func!r} is not one of sqrtsoftplus, softmax, sigmoid")
        if not 0 <= self.n_hash_layers <= self.n_layers:
            problems.append(f"n_hash_layers={self.n_hash_layers} outside 0..n_layers={self.n_layers}")
        if self.window_size < 1:
            problems.append(f"window_size={self.window_size} must be >= 1")
        if self.hc_mult < 1:
            problems.append(f"hc_mult={self.hc_mult} must be >= 1")
        for name in ("weight_dtype",):
            if getattr(self, name) not in ("fp32", "bf16", "fp8"):
                problems.append(f"{name}={getattr(self, name)!r} is not one of fp32, bf16, fp8")
        if self.expert_dtype not in (None, "fp32", "bf16", "fp8", "fp4"):
            problems.append(f"expert_dtype={self.expert_dtype!r} is not one of fp32, bf16, fp8, fp4")
        if not set(self.fim_orders) <= {"psm", "spm"} or not self.fim_orders:
            problems.append(f"fim_orders={list(self.fim_orders)} must be a non-empty subset of ['psm', 'spm']")
        if problems:
            raise ConfigError("; ".join(problems))

    # derived -------------------------------------------------------------------------------
    @property
    def n_nope_dim(self) -> int:
        return self.head_dim - self.rope_head_dim

    def layer_ratio(self, layer_id: int) -> int:
        """Compression ratio of a block; MTP blocks (layer_id >= n_layers) are sliding-only."""
        return self.compress_ratios[layer_id] if layer_id < self.n_layers else 0

    def layer_kind(self, layer_id: int) -> LayerKind:
        """Attention kind of a block; MTP blocks are sliding-only."""
        return self.layer_kinds[layer_id] if layer_id < self.n_layers else LayerKind.SLIDING

    def is_hash_layer(self, layer_id: int) -> bool:
        return layer_id < min(self.n_hash_layers, self.n_layers)

    def to_official_dict(self) -> dict[str, Any]:
        """The official inference form, MTP entries appended to `compress_ratios`."""
        d = dataclasses.asdict(self)
        d["compress_ratios"] = list(self.compress_ratios) + [0] * self.n_mtp_layers
        d["fim_orders"] = list(self.fim_orders)
        d.pop("layer_kinds")
        if self.layer_kinds != tuple(LayerKind.from_ratio(r) for r in self.compress_ratios):
            d["layer_kinds"] = [k.value for k in self.layer_kinds]  # the official form cannot say it
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_official_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> ModelArgs:
        """Builds ModelArgs from either config form (see the module docstring)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        if "hidden_size" in raw or "num_hidden_layers" in raw:
            kwargs = _from_hf(raw, source)
        else:
            kwargs = _from_official(raw, source)
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> ModelArgs:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: not found") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable JSON ({exc})") from exc
        return cls.from_dict(raw, source=str(path))


_FIELDS = {f.name for f in dataclasses.fields(ModelArgs)}

# Official-form fields that describe the serving set-up, not the model.
_OFFICIAL_IGNORED = {"max_batch_size", "dtype", "scale_fmt", "scale_dtype", "model_type", "architectures"}

# HF-form fields that are generic PreTrainedConfig plumbing or training knobs.
_HF_IGNORED = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "use_cache",
    "initializer_range", "attention_dropout", "output_router_logits", "router_aux_loss_coef",
    "router_jitter_noise", "pad_token_id", "auto_map", "_name_or_path", "keys_to_ignore_at_inference",
    "topk_method", "kv_lora_rank", "generation_config", "id2label", "label2id", "return_dict",
    "output_hidden_states", "output_attentions", "tokenizer_class", "chat_template",
}  # fmt: skip

# HF name -> official name for fields that map one to one.
_HF_RENAMES = {
    "vocab_size": "vocab_size", "hidden_size": "dim", "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads", "head_dim": "head_dim", "q_lora_rank": "q_lora_rank",
    "o_groups": "o_groups", "o_lora_rank": "o_lora_rank", "sliding_window": "window_size",
    "index_n_heads": "index_n_heads", "index_head_dim": "index_head_dim", "index_topk": "index_topk",
    "n_routed_experts": "n_routed_experts", "num_experts_per_tok": "n_activated_experts",
    "n_shared_experts": "n_shared_experts", "moe_intermediate_size": "moe_inter_dim",
    "scoring_func": "score_func", "routed_scaling_factor": "route_scale", "swiglu_limit": "swiglu_limit",
    "hc_mult": "hc_mult", "hc_sinkhorn_iters": "hc_sinkhorn_iters", "hc_eps": "hc_eps",
    "rope_theta": "rope_theta", "compress_rope_theta": "compress_rope_theta", "rms_norm_eps": "norm_eps",
    "max_position_embeddings": "max_seq_len", "bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
    "num_nextn_predict_layers": "n_mtp_layers", "expert_dtype": "expert_dtype", "quant_sim": "quant_sim",
    "fim_orders": "fim_orders",
}  # fmt: skip

_LAYER_TYPE_RATIO = {
    "sliding_attention": 0,
    "compressed_sparse_attention": 4,
    "heavily_compressed_attention": 128,
}


def _require(raw: dict, key: str, expected: Any, source: str, problems: list[str]) -> None:
    if key in raw and raw[key] != expected:
        problems.append(f"{key}={raw[key]!r} (DeepSeek-V4 requires {expected!r})")


def _dtype_from_quant(raw: dict, source: str, problems: list[str]) -> dict[str, Any]:
    """Weight storage from `quantization_config` (HF) or `dtype` (official)."""
    out: dict[str, Any] = {}
    qc = raw.get("quantization_config")
    if qc is not None:
        if not isinstance(qc, dict):
            problems.append("quantization_config must be an object")
            return out
        method, fmt = qc.get("quant_method"), qc.get("fmt", "e4m3")
        block = qc.get("weight_block_size", [128, 128])
        if method != "fp8" or fmt != "e4m3" or list(block) != [128, 128]:
            problems.append(f"quantization_config {qc} unsupported (need fp8 e4m3 with 128x128 blocks)")
        out["weight_dtype"] = "fp8"
        if "expert_dtype" in qc:
            out["expert_dtype"] = qc["expert_dtype"]
        out["quant_sim"] = True
    return out


def _from_official(raw: dict, source: str) -> dict[str, Any]:
    problems: list[str] = []
    unknown = sorted(k for k in raw if k not in _FIELDS and k not in _OFFICIAL_IGNORED and k != "n_mtp_layers")
    if unknown:
        raise ConfigError(f"{source}: unknown config fields {unknown}")
    kw = {k: v for k, v in raw.items() if k in _FIELDS}
    missing = [k for k in ("vocab_size", "dim", "n_layers", "n_heads", "compress_ratios") if k not in kw]
    if missing:
        raise ConfigError(f"{source}: missing required fields {missing}")
    ratios = list(kw.pop("compress_ratios"))
    n_layers = kw["n_layers"]
    n_mtp = kw.get("n_mtp_layers", len(ratios) - n_layers)
    if len(ratios) not in (n_layers, n_layers + n_mtp) or n_mtp < 0:
        problems.append(f"compress_ratios has {len(ratios)} entries; expected n_layers={n_layers} (+ n_mtp_layers)")
    elif any(r != 0 for r in ratios[n_layers:]):
        problems.append(f"compress_ratios MTP entries {ratios[n_layers:]} must be 0 (MTP blocks are sliding-only)")
    if raw.get("dtype") == "fp8":
        kw.setdefault("weight_dtype", "fp8")
        kw.setdefault("quant_sim", True)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    kw["compress_ratios"] = tuple(ratios[:n_layers])
    kw["n_mtp_layers"] = max(n_mtp, 0)
    if "fim_orders" in kw:
        kw["fim_orders"] = tuple(kw["fim_orders"])
    if "layer_kinds" in kw:
        kw["layer_kinds"] = tuple(kw["layer_kinds"])
    return kw


def _from_hf(raw: dict, source: str) -> dict[str, Any]:
    problems: list[str] = []
    structural = {
        "layer_types", "compress_ratios", "compress_rates", "compress_rate_csa", "compress_rate_hca",
        "mlp_layer_types", "num_hash_layers", "rope_parameters", "rope_scaling", "partial_rotary_factor",
        "qk_rope_head_dim", "num_key_value_heads", "hidden_act", "tie_word_embeddings", "norm_topk_prob",
        "attention_bias", "mlp_bias", "quantization_config",
    }  # fmt: skip
    unknown = sorted(k for k in raw if k not in _HF_RENAMES and k not in _HF_IGNORED and k not in structural)
    if unknown:
        raise ConfigError(f"{source}: unknown config fields {unknown}")
    kw: dict[str, Any] = {_HF_RENAMES[k]: v for k, v in raw.items() if k in _HF_RENAMES}
    if isinstance(kw.get("eos_token_id"), list):
        kw["eos_token_id"] = kw["eos_token_id"][0]
    for key, expected in (("num_key_value_heads", 1), ("hidden_act", "silu"), ("tie_word_embeddings", False),
                          ("norm_topk_prob", True), ("attention_bias", False), ("mlp_bias", False)):  # fmt: skip
        _require(raw, key, expected, source, problems)
    n_layers = kw.get("n_layers")
    if n_layers is None:
        raise ConfigError(f"{source}: missing required field num_hidden_layers")

    # compression schedule: layer_types x compress_rates, or compress_ratios
    rates = dict(raw.get("compress_rates") or {})
    for legacy, kind in (("compress_rate_csa", "compressed_sparse_attention"),
                         ("compress_rate_hca", "heavily_compressed_attention")):  # fmt: skip
        if legacy in raw:
            rates[kind] = raw[legacy]
    type_ratio = {**_LAYER_TYPE_RATIO, **rates}
    from_types = None
    if raw.get("layer_types") is not None:
        bad = [t for t in raw["layer_types"] if t not in type_ratio]
        if bad:
            problems.append(f"layer_types has unknown entries {bad}")
        else:
            from_types = [type_ratio[t] for t in raw["layer_types"]][:n_layers]
            kw["layer_kinds"] = tuple(LayerKind(t) for t in raw["layer_types"][:n_layers])
    from_ratios = list(raw["compress_ratios"]) if raw.get("compress_ratios") is not None else None
    if from_ratios is not None and from_types is not None and from_ratios[:n_layers] != from_types:
        problems.append(f"layer_types {raw['layer_types']} contradicts compress_ratios {from_ratios}")
    ratios = from_types if from_types is not None else from_ratios
    if ratios is None:
        problems.append("neither layer_types nor compress_ratios given")
        ratios = []
    elif len(ratios) < n_layers:
        problems.append(f"layer schedule has {len(ratios)} entries for num_hidden_layers={n_layers}")
    kw["compress_ratios"] = tuple(ratios[:n_layers])

    # hash layers: a prefix of mlp_layer_types, or num_hash_layers
    n_hash = raw.get("num_hash_layers")
    if raw.get("mlp_layer_types") is not None:
        types = list(raw["mlp_layer_types"])[:n_layers]
        n_prefix = next((i for i, t in enumerate(types) if t != "hash_moe"), len(types))
        if any(t not in ("hash_moe", "moe") for t in types) or "hash_moe" in types[n_prefix:]:
            problems.append(f"mlp_layer_types {types} must be 'hash_moe' for a prefix of layers, then 'moe'")
        if n_hash is not None and n_hash != n_prefix:
            problems.append(f"num_hash_layers={n_hash} contradicts mlp_layer_types ({n_prefix} hash layers)")
        n_hash = n_prefix
    kw["n_hash_layers"] = 3 if n_hash is None else n_hash

    # rope: nested rope_parameters {main, compress} or flat rope_scaling + thetas
    head_dim = kw.get("head_dim", 512)
    rope_dim = raw.get("qk_rope_head_dim")
    if raw.get("partial_rotary_factor") is not None:
        from_factor = int(head_dim * raw["partial_rotary_factor"])
        if rope_dim is not None and rope_dim != from_factor:
            problems.append(f"qk_rope_head_dim={rope_dim} contradicts partial_rotary_factor (-> {from_factor})")
        rope_dim = from_factor
    kw["rope_head_dim"] = 64 if rope_dim is None else rope_dim
    rp = raw.get("rope_parameters")
    scaling = raw.get("rope_scaling")
    if isinstance(rp, dict) and isinstance(rp.get("main"), dict) and isinstance(rp.get("compress"), dict):
        main, comp = rp["main"], rp["compress"]
        if main.get("rope_type", "default") != "default":
            problems.append(f"rope_parameters.main.rope_type={main.get('rope_type')!r} (V4 needs 'default')")
        _check_equal(kw, "rope_theta", main.get("rope_theta"), "rope_parameters.main.rope_theta", problems)
        _check_equal(kw, "compress_rope_theta", comp.get("rope_theta"), "rope_parameters.compress.rope_theta",
                     problems)  # fmt: skip
        if comp.get("attention_factor", 1.0) != 1.0:
            problems.append(f"rope_parameters.compress.attention_factor={comp['attention_factor']} (V4 uses 1.0)")
        scaling = comp if comp.get("rope_type", comp.get("type")) == "yarn" else None
    elif rp is not None:
        scaling = rp if scaling is None else scaling
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind not in ("yarn", "deepseek_yarn", "default", None):
            problems.append(f"rope scaling type {kind!r} unsupported (yarn only)")
        if kind in ("yarn", "deepseek_yarn"):
            kw["rope_factor"] = float(scaling.get("factor", 1.0))
            kw["original_seq_len"] = int(scaling.get("original_max_position_embeddings", 65536))
            kw["beta_fast"] = float(scaling.get("beta_fast") or 32)
            kw["beta_slow"] = float(scaling.get("beta_slow") or 1)
            if "rope_theta" in scaling and "compress_rope_theta" not in kw and not isinstance(rp, dict):
                kw["compress_rope_theta"] = scaling["rope_theta"]
    kw.update(_dtype_from_quant(raw, source, problems))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    if "fim_orders" in kw:
        kw["fim_orders"] = tuple(kw["fim_orders"])
    return kw


def _check_equal(kw: dict, key: str, value: Any, where: str, problems: list[str]) -> None:
    if value is None:
        return
    if key in kw and not math.isclose(float(kw[key]), float(value)):
        problems.append(f"{where}={value} contradicts {key}={kw[key]}")
    kw[key] = value


def tiny_args(**overrides: Any) -> ModelArgs:
    """A small config with every layer type, for tests and examples."""
    base = dict(
        vocab_size=512, dim=64, n_layers=4, n_heads=4, head_dim=32, rope_head_dim=16, q_lora_rank=32,
        o_groups=2, o_lora_rank=16, compress_ratios=(0, 4, 128, 4), n_mtp_layers=1, window_size=128,
        index_n_heads=8, index_head_dim=32, index_topk=8, n_routed_experts=8, n_activated_experts=2,
        n_shared_experts=1, moe_inter_dim=32, n_hash_layers=1, route_scale=1.5, rope_factor=16.0,
    )  # fmt: skip
    base.update(overrides)
    return ModelArgs(**base)


__all__ = ["ModelArgs", "ConfigError", "LayerKind", "tiny_args"]
