"""ctypes side of step.c: its structs, mirrored field for field, and the built library.

The engine fills these (deepfim.engine.decode_step); nothing here knows about model modules.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from deepfim.kernels import cbuild

_HERE = Path(__file__).parent
_SOURCE = _HERE / "step.c"
_LINKED = (_HERE.parent / "sparse_attn" / "decode.c", _HERE.parent / "mhc" / "mhc.c")

f32p = ctypes.POINTER(ctypes.c_float)
i64 = ctypes.c_int64
ptr = ctypes.c_void_p

SCORE_FUNCS = {"softmax": 0, "sigmoid": 1, "sqrtsoftplus": 2}
MAX_TOKENS = 16  # step.c MAX_TOKENS
LOGITS_MODES = {"none": 0, "last": 1, "all": 2}


class CompressorWeights(ctypes.Structure):
    _fields_ = [(name, ptr) for name in ("wkv", "wgate", "ape", "norm")] + [
        (name, i64) for name in ("ratio", "width", "out_dim")
    ]


class LayerWeights(ctypes.Structure):
    _fields_ = (
        [("ratio", i64)]
        + [(name, ptr) for name in ("hc_attn_fn", "hc_attn_base", "hc_attn_scale", "hc_ffn_fn", "hc_ffn_base",
                                    "hc_ffn_scale", "attn_norm", "ffn_norm", "wq_a", "q_norm", "wq_b", "wkv",
                                    "kv_norm", "wo_a", "wo_b", "attn_sink")]  # fmt: skip
        + [("comp", CompressorWeights), ("index_comp", CompressorWeights)]
        + [(name, ptr) for name in ("index_wq_b", "index_weights_proj", "gate", "gate_bias", "tid2eid",
                                    "w1", "w2", "w3", "sw1", "sw2", "sw3", "cis_table", "inv_freq")]  # fmt: skip
        + [("table_rows", i64)]
    )


class ModelWeights(ctypes.Structure):
    _fields_ = (
        [(name, i64) for name in ("dim", "n_hc", "n_heads", "head_dim", "rope_dim", "q_lora", "o_groups", "o_lora",
                                  "window", "index_heads", "index_dim", "index_topk", "n_experts", "n_active",
                                  "inter", "shared_inter", "vocab", "n_layers", "sinkhorn_iters", "score_func")]
        + [(name, ctypes.c_float) for name in ("hc_eps", "norm_eps", "route_scale", "swiglu_limit")]
        + [(name, ptr) for name in ("embed", "hc_head_fn", "hc_head_base", "hc_head_scale", "norm", "head")]
        + [("layers", ctypes.POINTER(LayerWeights))]
    )  # fmt: skip


class CompressorStep(ctypes.Structure):
    _fields_ = [
        ("pending_kv", ptr), ("pending_gate", ptr), ("n_pending", i64), ("prev_kv", ptr), ("prev_gate", ptr),
        ("next_pending_kv", ptr), ("next_pending_gate", ptr), ("next_prev_kv", ptr), ("next_prev_gate", ptr),
        ("chunk_kv", ptr), ("chunk_gate", ptr), ("entries", ptr), ("n_entries", i64),
    ]  # fmt: skip


class LayerStep(ctypes.Structure):
    _fields_ = [("window", ptr), ("n_window", i64), ("next_window", ptr), ("chunk_kv", ptr),
                ("comp", CompressorStep), ("index_comp", CompressorStep)]  # fmt: skip


def library() -> ctypes.CDLL | None:
    """step.c linked with the attention and mHC kernels, or None without a C compiler."""
    lib = cbuild.load(_SOURCE, *_LINKED)
    if lib is not None and not getattr(lib, "_typed", False):
        lib.v4_decode_step.restype = ctypes.c_int
        lib.v4_decode_step.argtypes = [ctypes.POINTER(ModelWeights), ctypes.POINTER(LayerStep), i64, ptr, i64, ptr,
                                       i64, ptr, ptr]  # fmt: skip
        lib.v4_step_scratch.restype = i64
        lib.v4_step_scratch.argtypes = [ctypes.POINTER(ModelWeights), i64, i64]
        lib._typed = True
    return lib
