"""ctypes side of step.c: its structs, mirrored field for field, and the built library.

The engine fills these (deepfim.engine.model.decode_step); nothing here knows about model modules.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from deepfim.kernels import cbuild

_HERE = Path(__file__).parent
_SOURCE = _HERE / "step.c"
_MHC = _HERE.parent / "mhc" / "mhc.c"
_INDEX_SELECT = _HERE.parent / "indexer" / "select.c"
_ATTENTION = _HERE.parent / "sparse_attn" / "decode.c"
_LINKED = (_ATTENTION, _MHC, _INDEX_SELECT)

i64 = ctypes.c_int64
ptr = ctypes.c_void_p

SCORE_FUNCS = {"softmax": 0, "sigmoid": 1, "sqrtsoftplus": 2}
LOGITS_MODES = {"none": 0, "last": 1, "all": 2}


def _fields(kind, names: str) -> list:
    return [(name, kind) for name in names.split()]


class CompressorWeights(ctypes.Structure):
    _fields_ = _fields(ptr, "wkv wgate ape norm") + _fields(i64, "ratio width out_dim overlap")


class LayerWeights(ctypes.Structure):
    _fields_ = (
        _fields(i64, "ratio csa")
        + _fields(ptr, "hc_attn_fn hc_attn_base hc_attn_scale hc_ffn_fn hc_ffn_base hc_ffn_scale attn_norm ffn_norm")
        + _fields(ptr, "wq_a wq_b wkv wo_a wo_b q_norm kv_norm attn_sink")
        + [("comp", CompressorWeights), ("index_comp", CompressorWeights)]
        + _fields(ptr, "index_wq_b index_weights_proj gate gate_bias tid2eid w1 w2 w3 sw1 sw2 sw3 cis_table inv_freq")
        + _fields(i64, "table_rows")
    )


class ModelWeights(ctypes.Structure):
    _fields_ = (
        _fields(i64, "dim n_hc n_heads head_dim rope_dim q_lora o_groups o_lora window index_heads index_dim")
        + _fields(i64, "index_topk n_experts n_active inter shared_inter vocab n_layers sinkhorn_iters score_func")
        + _fields(i64, "bf16 threads")
        + _fields(ctypes.c_float, "hc_eps norm_eps route_scale swiglu_limit")
        + _fields(ptr, "embed hc_head_fn hc_head_base hc_head_scale norm head")
        + [("layers", ctypes.POINTER(LayerWeights))]
    )


class CompressorStep(ctypes.Structure):
    _fields_ = (
        _fields(ptr, "pending_kv pending_gate")
        + _fields(i64, "n_pending")
        + _fields(ptr, "prev_kv prev_gate next_pending_kv next_pending_gate next_prev_kv next_prev_gate")
        + _fields(ptr, "chunk_kv chunk_gate entries")
        + _fields(i64, "n_entries")
    )


class LayerStep(ctypes.Structure):
    _fields_ = (
        _fields(ptr, "window")
        + _fields(i64, "n_window")
        + _fields(ptr, "next_window chunk_kv")
        + [("comp", CompressorStep), ("index_comp", CompressorStep)]
    )


@dataclass(frozen=True)
class Limits:
    """What one call of step.c accepts (its own constants, read from the library)."""

    max_tokens: int  # of one sequence
    max_active_experts: int
    max_streams: int
    max_head_dim: int
    max_rows: int  # tokens of all the sequences of one call
    max_index_heads: int
    max_index_dim: int


def limits(lib: ctypes.CDLL) -> Limits:
    out = (i64 * 7)()
    lib.v4_step_limits(out)
    return Limits(*out)


def prebuild(later: bool = True) -> None:
    """Starts compiling what a CPU engine loads (see `cbuild.prebuild`): mhc.c, indexer/select.c
    and sparse_attn/decode.c on their own (the module path's Sinkhorn, indexer selection and
    attention for a few queries: a first request needs them), and this library (~1.3 s of
    compiling) `later`, once the first request is served (`cbuild.release_later`): the engine
    serves on the module path until it is built (`building`). `later=False` compiles it at once
    too (the team server: no single first request to protect, many clients' decode waiting)."""
    cbuild.prebuild(_MHC)
    cbuild.prebuild(_INDEX_SELECT)
    cbuild.prebuild(_ATTENTION)
    cbuild.prebuild(_SOURCE, *_LINKED, openmp=True, later=later)


def building() -> bool:
    """Whether this library is being prebuilt and not ready yet."""
    return cbuild.pending(_SOURCE)


def compiling() -> bool:
    """Whether this library's prebuild is still running (cheaper than `building`)."""
    return cbuild.prebuilding(_SOURCE)


def wait_built() -> None:
    """Waits for this library's prebuild, if any, without hurrying it (see `prebuild`)."""
    cbuild.wait_prebuilt(_SOURCE)


def library() -> ctypes.CDLL | None:
    """step.c linked with the attention and mHC kernels, or None without a C compiler."""
    lib = cbuild.load(_SOURCE, *_LINKED, openmp=True)
    if lib is not None and not getattr(lib, "_typed", False):
        lib.v4_step_limits.restype = None
        lib.v4_step_limits.argtypes = [ctypes.POINTER(i64)]
        lib.v4_decode_batch.restype = ctypes.c_int
        lib.v4_decode_batch.argtypes = [ctypes.POINTER(ModelWeights), ctypes.POINTER(LayerStep), i64, ptr, ptr, ptr,
                                        ptr, ptr, ptr, ptr]  # fmt: skip
        lib.v4_step_scratch.restype = i64
        lib.v4_step_scratch.argtypes = [ctypes.POINTER(ModelWeights), i64, i64]
        lib._typed = True
    return lib
