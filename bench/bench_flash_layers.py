"""Decode ms/token of V4-Flash-shaped layers on one GPU, eager and with CUDA graphs, extrapolated to
43 layers and set against the HBM-bandwidth limit of the bytes one token must read.

Builds `--layers` V4-Flash layers (true widths, 256 experts, top-6, the 129,280-token head; FP8 linears
and FP4 experts kept quantized, bf16 dense matrices; random weights made on the GPU by
engine/model/synthetic.random_model), prefills `--context` tokens, then decodes `--tokens` greedy steps
from the same state eagerly and through `GraphedDecode` (engine/model/cuda_graph.py). Prints medians:
ms/token (synchronised), host ms/token (until the call returns, before synchronising: launch and
Python cost), the head's own ms; the extrapolation to V4-Flash, head + 43 / L x (step - head); and the
bandwidth limit: the bytes one decode token reads (every attention, shared-expert and dense weight,
K/E of the routed experts, the head, the state it attends to) / the GPU's HBM bandwidth.

    python bench/bench_flash_layers.py [--layers 4] [--context 4096] [--tokens 32]
    python bench/bench_flash_layers.py --dry-run   # the CPU: tiny widths, eager, checks the script only

Without CUDA (and without --dry-run) it prints a message and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from deepfim.bench.kernel_cases import _peaks
from deepfim.engine.model.checkpoint_formats import official_layout
from deepfim.engine.model.checkpoint_names import checkpoint_target
from deepfim.engine.model.config import LayerKind, ModelArgs
from deepfim.engine.model.cuda_graph import GraphedDecode
from deepfim.engine.model.synthetic import random_model
from deepfim.engine.model.v4_configs import FLASH

TINY = {"dim": 256, "n_heads": 8, "head_dim": 64, "rope_head_dim": 16, "q_lora_rank": 128, "o_groups": 2,
        "o_lora_rank": 128, "index_n_heads": 8, "index_head_dim": 64, "index_topk": 16, "moe_inter_dim": 128,
        "n_routed_experts": 16, "vocab_size": 1024}  # fmt: skip


def flash_args(layers: int, dry_run: bool) -> ModelArgs:
    ratios = [4 if i % 2 == 0 else 128 for i in range(layers)]  # CSA / HCA alternate, as in V4-Flash
    raw = {**FLASH, "n_layers": layers, "compress_ratios": ratios, "n_hash_layers": 1, **(TINY if dry_run else {})}
    return ModelArgs.from_dict(raw, source="bench")


def token_bytes(args: ModelArgs, context: int) -> int:
    """Bytes one decode token reads at `context`: weights (K/E of the routed experts, one embedding row,
    no MTP block) as kept (official_layout), and the fp32 state rows its attention and indexer read."""
    total = 0
    share = args.n_activated_experts / args.n_routed_experts
    for key, info in official_layout(args).items():
        t = checkpoint_target(key)
        if t.name.startswith("mtp."):
            continue  # the MTP block runs only for drafts
        if t.name == "embed.weight":
            total += info.nbytes // info.shape[0]
        elif t.expert is not None:
            total += info.nbytes * share
        elif key.endswith("tid2eid"):
            total += args.n_activated_experts * 8
        else:
            total += info.nbytes
    d, di = args.head_dim, args.index_head_dim
    for kind, m in zip(args.layer_kinds, args.compress_ratios, strict=True):
        total += (args.window_size - 1) * d * 4
        if kind is LayerKind.CSA:
            total += min(args.index_topk, context // m) * d * 4 + (context // m) * di * 4
        elif kind is LayerKind.HCA:
            total += (context // m) * d * 4
    return int(total)


def time_steps(step, state, token: torch.Tensor, n: int, sync) -> tuple[list[float], list[float], torch.Tensor]:
    """(ms per step, host ms per step, the first step's logits) of `n` greedy steps."""
    totals, hosts, first = [], [], None
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        logits = step(token, state)
        t1 = time.perf_counter()
        sync()
        totals.append((time.perf_counter() - t0) * 1e3)
        hosts.append((t1 - t0) * 1e3)
        first = logits.float().cpu() if first is None else first
        token = logits[:, -1].argmax(-1, keepdim=True)
    return totals, hosts, first


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=4, help="V4-Flash layers to build (CSA and HCA alternate)")
    p.add_argument("--context", type=int, default=4096, help="tokens prefilled before decoding")
    p.add_argument("--tokens", type=int, default=32, help="decode steps timed per variant")
    p.add_argument("--dry-run", action="store_true", help="tiny widths on the CPU, eager only: checks the script")
    p.add_argument("--peak-gbs", type=float, help="HBM bandwidth in GB/s (default: from kernel_cases' table)")
    a = p.parse_args()
    if not a.dry_run and not torch.cuda.is_available():
        print("bench_flash_layers: no CUDA device here (--dry-run checks the script on the CPU)")
        return 0
    device = torch.device("cpu" if a.dry_run else "cuda")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    context = min(a.context, 256) if a.dry_run else a.context
    args = flash_args(a.layers, a.dry_run)
    t0 = time.perf_counter()
    model = random_model(args, device, torch.float32 if a.dry_run else torch.bfloat16)
    sync()
    name = "CPU (dry run: figures check the script, not the machine)" if a.dry_run else torch.cuda.get_device_name()
    hbm = (a.peak_gbs * 1e9 if a.peak_gbs else None) or (_peaks(name, None, None)[0] if not a.dry_run else 50e9)
    print(
        f"device: {name}; {a.layers} V4-Flash-shaped layers built in {time.perf_counter() - t0:.1f} s"
        + (f", {torch.cuda.memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""),
        flush=True,
    )
    ids = torch.randint(0, args.vocab_size, (1, context), device=device)
    with torch.inference_mode():
        state = model.new_state()
        t0 = time.perf_counter()
        for start in range(0, context, 1024):
            out = model(ids[:, start : start + 1024], state, logits="last")
        sync()
        print(f"prefill {context} tokens: {time.perf_counter() - t0:.2f} s", flush=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        eager = time_steps(lambda t, s: model(t, s, logits="last").logits, state.snapshot(), token, a.tokens, sync)
        graphed_step = GraphedDecode(model, capture=not a.dry_run)
        graphed = time_steps(lambda t, s: graphed_step(t, s, "last")[0], state.snapshot(), token, a.tokens, sync)
        head = []
        for _ in range(a.tokens):
            sync()
            t0 = time.perf_counter()
            graphed_step._run(len(model.layers))
            sync()
            head.append((time.perf_counter() - t0) * 1e3)
    layer_bytes = token_bytes(args, context)
    full_args = ModelArgs.from_dict({**FLASH, **(TINY if a.dry_run else {})}, source="V4-Flash")
    flash_bytes = token_bytes(full_args, context)
    head_ms = statistics.median(head)
    print(f"graph capture: {'off (dry run)' if a.dry_run else graphed_step.failed or 'ok'}; first-step max |logits "
          f"eager - graphed| {(eager[2] - graphed[2]).abs().max().item():.3e}")  # fmt: skip
    print(f"{'variant':10s} {'ms/token':>9s} {'host ms':>8s} {'GB/s':>7s} {'%HBM':>6s} {'43 layers ms':>13s} "
          f"{'limit ms':>9s} {'% of limit':>10s}")  # fmt: skip
    limit = flash_bytes / hbm * 1e3
    for label, (totals, hosts, _) in (("eager", eager), ("graphed", graphed)):
        step = statistics.median(totals)
        extrapolated = head_ms + full_args.n_layers / a.layers * (step - head_ms)
        gbs = layer_bytes / step / 1e6
        print(f"{label:10s} {step:9.3f} {statistics.median(hosts):8.3f} {gbs:7.0f} {100 * gbs * 1e9 / hbm:5.1f}% "
              f"{extrapolated:13.2f} {limit:9.3f} {100 * limit / extrapolated:9.1f}%", flush=True)  # fmt: skip
    print(
        f"bytes per token: {layer_bytes / 1e9:.3f} GB for these {a.layers} layers + head, {flash_bytes / 1e9:.3f} "
        f"GB for V4-Flash (43 layers) at {context} tokens; head {head_ms:.3f} ms; HBM {hbm / 1e9:.0f} GB/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
