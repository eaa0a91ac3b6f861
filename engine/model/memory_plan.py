"""The memory planner: bytes per device before anything is loaded, and a clear refusal when they do not fit.

Weights are counted from the checkpoint's safetensors headers (checkpoint_formats.read_headers) or,
for a config alone, from the official layout of its shape (`official_layout`), by the form they
will be held in: FP8 and packed FP4 bytes with their ue8m0 scales when kept quantized, else the
dense dtype for the matrices and fp32 for the vectors, as quantized.py and the loader hold them;
under a parallel layout only one rank's share. State is the per-sequence V4 state of
engine/model/state.py at a context length (fp32 rows: the sliding window, compressed entries,
indexer keys, the compressors' open windows), plus the append buffers' growth headroom (they
double when full, so up to as many rows again are reserved). Workspace is an estimate of one
prefill chunk's activations and, for the torch reference path of kept weights, the dequantized
copies it makes (one FP8 matrix; up to 64 experts of a layer).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from deepfim.engine.model.checkpoint_formats import StoredTensor, quantized_modules
from deepfim.engine.model.checkpoint_names import checkpoint_target
from deepfim.engine.model.config import LayerKind, ModelArgs

GiB = 1 << 30
_STATE_BYTES = 4  # the state's rows are fp32 (activations are fp32 whatever the weights are)
_PREFILL_CHUNK = 128  # the serving runner's prefill chunk (prefix_cache block)
_EXPERT_CHUNK = 64  # experts the reference dequantizes at a time (kernels/moe_gemm/ref.py)


class MemoryPlanError(ValueError):
    """The plan does not fit the device; the message has the figures (a ValueError: what users asked for
    cannot be served, as a bad checkpoint path cannot)."""


@dataclass
class MemoryPlan:
    """Bytes on one device, by what holds them."""

    device: str
    weights: dict[str, int] = field(default_factory=dict)  # by format: fp8, fp4, scales, bf16, fp32, int
    state: dict[str, int] = field(default_factory=dict)
    workspace: int = 0
    context: int = 0
    batch: int = 0
    host: dict[str, int] = field(default_factory=dict)  # offloaded experts in (pinned) host memory

    @property
    def weight_bytes(self) -> int:
        return sum(self.weights.values())

    @property
    def state_bytes(self) -> int:
        return sum(self.state.values())

    @property
    def total(self) -> int:
        return self.weight_bytes + self.state_bytes + self.workspace

    def as_dict(self) -> dict:
        return {"device": self.device, "weights": dict(self.weights), "state": dict(self.state),
                "workspace": self.workspace, "context": self.context, "batch": self.batch,
                "total": self.total, "host": dict(self.host)}  # fmt: skip

    def table(self) -> str:
        lines = [f"memory plan for {self.device}:"]
        for title, rows in (("weights", self.weights), (f"state ({self.batch} x {self.context} tokens)", self.state)):
            if not rows:
                continue
            lines.append(f"  {title}: {_gib(sum(rows.values()))}")
            lines += [f"    {name:<28} {_gib(n)}" for name, n in rows.items() if n]
        lines.append(f"  workspace (estimate): {_gib(self.workspace)}")
        lines.append(f"  total: {_gib(self.total)}")
        if self.host:
            lines.append(f"  host memory (pinned, not in the total): {_gib(sum(self.host.values()))}")
            lines += [f"    {name:<28} {_gib(n)}" for name, n in self.host.items()]
        return "\n".join(lines)


def _gib(n: int) -> str:
    return f"{n / GiB:10.3f} GiB ({n:,} B)"


def _is_matrix(name: str) -> bool:
    """Our parameter names of the tensors loaded in the dense dtype (quantized.materialize's rule)."""
    if name.endswith((".ffn.w1", ".ffn.w2", ".ffn.w3")):
        return True
    module, _, leaf = name.rpartition(".")
    return leaf == "weight" and not module.endswith("norm")


def _kept_fp32_on_cpu(name: str) -> bool:
    """The vocabulary head and the router gates: fp32 on the CPU whatever the dense dtype
    (quantized.materialize)."""
    return name == "head.weight" or name.endswith(".ffn.gate.weight")


def plan_weights(
    args: ModelArgs,
    headers: dict[str, StoredTensor],
    dtype: torch.dtype = torch.float32,
    keep_quantized: bool = False,
    layout=None,
    device: str = "cpu",
    hot_experts: int | None = None,
) -> MemoryPlan:
    """Bytes of the weights as loaded (this rank's share under `layout`); with `hot_experts` the
    routed experts are all in `host` and that many per layer on the device (expert_offload.py)."""
    fp8, fp4 = quantized_modules(headers) if keep_quantized else ({}, {})
    dense_bytes = torch.empty(0, dtype=dtype).element_size()
    dense_name = {2: "bf16" if dtype == torch.bfloat16 else "fp16", 4: "fp32", 8: "fp64"}[dense_bytes]
    rows = {"fp8": 0, "fp4": 0, "scales": 0, dense_name: 0, "fp32": 0, "int": 0}
    n_experts = args.n_routed_experts
    n_local = n_experts // (layout.ep if layout is not None else 1)
    on_device = min(1.0, hot_experts / n_local) if hot_experts else 1.0
    host: dict[str, int] = {}
    for key, info in headers.items():
        t = checkpoint_target(key)
        if t.name.startswith("mtp.") and not args.n_mtp_layers:
            continue
        share = _share(t, layout, n_experts)
        if not share:
            continue
        if device == "cpu" and _kept_fp32_on_cpu(t.name):
            row, nbytes = _held_as(key, t, info, headers, fp8, fp4, "fp32", 4)
        else:
            row, nbytes = _held_as(key, t, info, headers, fp8, fp4, dense_name, dense_bytes)
        if row is None:
            continue
        nbytes *= share
        if hot_experts and t.name.endswith((".ffn.w1", ".ffn.w2", ".ffn.w3")):
            host[f"offloaded experts: {row}"] = host.get(f"offloaded experts: {row}", 0) + int(nbytes)
            nbytes *= on_device  # the device holds `hot_experts` slots of each layer
        rows[row] += int(nbytes)
    rows["buffers"] = _buffers(args)
    return MemoryPlan(device, {k: v for k, v in rows.items() if v}, host=host)


def _held_as(key: str, t, info: StoredTensor, headers, fp8, fp4, dense_name: str, dense_bytes: int):
    """(row, bytes) of one stored tensor as the loader holds it; (None, 0) for what it absorbs
    (the scales of dequantized weights)."""
    module = t.name.rpartition(".")[0]  # the linear of a weight, the MoE layer of stacked experts
    kept = module in (fp8 if t.expert is None else fp4)
    if t.kind == "scale":
        return ("scales", info.nbytes) if kept else (None, 0)
    if kept:
        return ("fp8" if t.expert is None else "fp4"), info.nbytes
    if info.dtype in ("I32", "I64", "I8", "U8") and not _packed(key, t, headers):
        return "int", info.numel * 8  # routing tables are held as int64
    numel = info.numel * (2 if _packed(key, t, headers) else 1)
    return (dense_name, numel * dense_bytes) if _is_matrix(t.name) else ("fp32", numel * 4)


def _packed(key: str, t, headers: dict[str, StoredTensor]) -> bool:
    """A packed FP4 weight (two values a byte, a scale beside it)."""
    if t.expert is None or headers[key].dtype not in ("I8", "U8", "F4"):
        return False
    return key.rsplit(".", 1)[0] + ".scale" in headers


def _share(t, layout, n_experts: int) -> float:
    """The fraction of a tensor this rank holds."""
    if layout is None:
        return 1.0
    if t.name.endswith((".ffn.w1", ".ffn.w2", ".ffn.w3")):
        offset, count = layout.expert_range(n_experts)
        if t.expert is None:  # transformers' stacked [E, ...] layout
            return count / n_experts
        return 1.0 if offset <= t.expert < offset + count else 0.0
    cut = layout.split(t.name)
    return 1.0 / cut[2] if cut else 1.0


def _buffers(args: ModelArgs) -> int:
    """Non-persistent buffers: the two RoPE frequency vectors and the indexers' Hadamard matrices."""
    csa = sum(k is LayerKind.CSA for k in args.layer_kinds) if args.quant_sim else 0
    return 2 * (args.rope_head_dim // 2) * 4 + csa * args.index_head_dim**2 * 4


def plan_state(args: ModelArgs, context: int, batch: int = 1) -> dict[str, int]:
    """Bytes of `batch` sequences' V4 state at `context` tokens (engine/model/state.py's layout)."""
    d, di, w = args.head_dim, args.index_head_dim, args.window_size
    window = entries = index = open_windows = 0
    kinds = [*args.layer_kinds, *[LayerKind.SLIDING] * args.n_mtp_layers]
    ratios = [*args.compress_ratios, *[0] * args.n_mtp_layers]
    for kind, m in zip(kinds, ratios, strict=True):
        window += (w - 1) * d
        if kind is LayerKind.SLIDING:
            continue
        entries += (context // m) * d
        overlap = kind is LayerKind.CSA
        width = 2 * d if overlap else d
        open_windows += 2 * (m - 1) * width + (2 * m * d if overlap else 0)  # kv + gate (+ CSA's previous A-halves)
        if kind is LayerKind.CSA:
            index += (context // m) * di
            open_windows += 2 * (m - 1) * 2 * di + 2 * m * di
    rows = {
        "sliding window": window,
        "compressed entries": entries,
        "indexer keys": index,
        "open compressor windows": open_windows,
        "append-buffer headroom": entries + index,
    }
    return {k: v * _STATE_BYTES * batch for k, v in rows.items()}


def _workspace(args: ModelArgs, context: int, batch: int, keep_quantized: bool, device: str,
               headers: dict[str, StoredTensor]) -> int:  # fmt: skip
    """One prefill chunk's activations (streams, q, attention scores, logits) per sequence, plus
    the reference path's dequantized copies of kept weights (not on CUDA: the kernels dequantize
    in registers)."""
    t, n, dim = _PREFILL_CHUNK, args.hc_mult, args.dim
    keys = args.window_size + max([args.index_topk] + [context // r for r in args.compress_ratios if r > 4])
    acts = t * (6 * n * dim + 4 * args.n_heads * args.head_dim + 2 * args.n_heads * keys) * 4 + args.vocab_size * 4
    rope_tables = 2 * 8192 * (args.rope_head_dim // 2) * 8  # built at the first call (complex64)
    total = acts * batch + rope_tables
    if keep_quantized and not device.startswith("cuda"):
        largest_fp8 = max((i.numel for k, i in headers.items() if i.dtype == "F8_E4M3"), default=0)
        expert = 3 * args.moe_inter_dim * args.dim
        total += (largest_fp8 + min(_EXPERT_CHUNK, args.n_routed_experts) * expert) * 4
    return total


def plan(
    args: ModelArgs,
    headers: dict[str, StoredTensor],
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    keep_quantized: bool = False,
    context: int = 16384,
    batch: int = 1,
    layout=None,
    hot_experts: int | None = None,
) -> MemoryPlan:
    """Weights, state and workspace on one device."""
    out = plan_weights(args, headers, dtype, keep_quantized, layout, device, hot_experts)
    out.state = plan_state(args, context, batch)
    out.workspace = _workspace(args, context, batch, keep_quantized, device, headers)
    out.context, out.batch = context, batch
    return out


def available_bytes(device: torch.device) -> int:
    """Memory free on the device now: CUDA's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "meta":
        return 1 << 62
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(
    memory: MemoryPlan, device: torch.device, available: int | None = None, host_available: int | None = None
) -> None:
    """Raises MemoryPlanError naming the figures when `memory.total` exceeds what the device has free,
    or the offloaded experts what the host has."""
    if memory.host:
        needed = sum(memory.host.values())
        host_free = available_bytes(torch.device("cpu")) if host_available is None else host_available
        if needed > host_free:
            raise MemoryPlanError(f"the offloaded experts need {needed / GiB:.2f} GiB of host memory (the host holds "
                                  f"every expert, the device copies of the hot ones) and {host_free / GiB:.2f} GiB "
                                  "are free")  # fmt: skip
    free = available_bytes(device) if available is None else available
    if memory.total > free:
        hint = "" if device.type == "cuda" else " (--keep-quantized holds FP8/FP4 weights as stored)"
        raise MemoryPlanError(
            f"the model does not fit {device}: it needs {memory.total / GiB:.2f} GiB (weights "
            f"{memory.weight_bytes / GiB:.2f}, state {memory.state_bytes / GiB:.2f}, workspace "
            f"{memory.workspace / GiB:.2f}) and {free / GiB:.2f} GiB are free{hint}; "
            "`deepfim plan` prints the breakdown"
        )
