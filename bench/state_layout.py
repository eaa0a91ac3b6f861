"""Bytes of per-sequence attention state after T tokens, per model family.

* DeepFIM's V4 state (`engine/model/state.py`), from `ModelArgs` alone, exactly as the engine
  stores it: per layer the sliding window's last W-1 raw kv rows; per compressed layer its
  entries (one per `ratio` tokens, head_dim wide) and the open window's kv and gate
  projections (2 x head_dim wide on CSA layers, whose windows overlap, plus the last closed
  window's A-halves); per CSA layer the lightning indexer's keys (index_head_dim wide) and its
  own compressor's open window. `element_bytes` is the stored dtype (fp32 on the CPU).
  `tests/bench/test_state_layout.py` checks it against `ModelState.nbytes()` of real forwards.
* DeepSeek-V3.2 (MLA + DSA lightning indexer): per layer and token one latent entry
  (kv_lora_rank 512 + rope 64) and one indexer key (128); FP8 in production (656 B + 132 B,
  FlashMLA's layout), bf16 otherwise.
* A dense GQA transformer: per layer and token K and V for each KV head.
"""

from __future__ import annotations

from deepfim.engine.model.config import LayerKind, ModelArgs
from deepfim.engine.model.v4_configs import known_args


def v4_state_bytes(args: ModelArgs, tokens: int, element_bytes: int = 4) -> dict[str, int]:
    """DeepFIM's state of one sequence after `tokens` tokens, by part (the main layers; with MTP
    drafting each MTP block adds one more window of W-1 rows, a constant)."""
    w, d, di = args.window_size, args.head_dim, args.index_head_dim
    parts = {"window": 0, "entries": 0, "indexer": 0, "open windows": 0}
    for layer in range(args.n_layers):
        kind, m = args.layer_kind(layer), args.compress_ratios[layer]
        parts["window"] += min(tokens, w - 1) * d
        if kind is LayerKind.SLIDING:
            continue
        csa = kind is LayerKind.CSA
        parts["entries"] += (tokens // m) * d
        parts["open windows"] += (tokens % m) * (2 if csa else 1) * d * 2  # kv and gate
        if csa:
            parts["open windows"] += m * d * 2 if tokens >= m else 0  # last closed window's A-halves
            parts["indexer"] += (tokens // m) * di
            parts["open windows"] += (tokens % m) * 2 * di * 2 + (m * di * 2 if tokens >= m else 0)
    return {k: v * element_bytes for k, v in parts.items()}


def v4_fp8_state_bytes(args: ModelArgs, tokens: int) -> int:
    """The same entries in the production FP8 layout of the releases (FlashMLA "MODEL1": 584 B a
    window row or entry, 132 B an FP8 indexer key); the fixed-size fp32 compressor windows
    are left out, as in v4-model.md §3.6."""
    total = 0
    for layer in range(args.n_layers):
        kind, m = args.layer_kind(layer), args.compress_ratios[layer]
        total += min(tokens, args.window_size) * 584
        if kind is not LayerKind.SLIDING:
            total += (tokens // m) * 584 + ((tokens // m) * 132 if kind is LayerKind.CSA else 0)
    return total


def v32_state_bytes(
    n_layers: int, tokens: int, fp8: bool = True, kv_lora: int = 512, rope: int = 64, index_dim: int = 128
) -> int:
    """DeepSeek-V3.2: MLA latent entry + DSA indexer key per layer and token (FlashMLA FP8:
    656 B + 132 B; bf16: 2 bytes an element)."""
    per_token = (656 + 132) if fp8 else 2 * (kv_lora + rope + index_dim)
    return n_layers * tokens * per_token


def gqa_state_bytes(n_layers: int, tokens: int, kv_heads: int = 8, head_dim: int = 128, element_bytes: int = 2) -> int:
    """Dense GQA: K and V per KV head, per layer and token."""
    return n_layers * tokens * 2 * kv_heads * head_dim * element_bytes


# the releases' configurations (engine/model/v4_configs.py, from their config.json)
FLASH = known_args("v4-flash")
PRO = known_args("v4-pro")
