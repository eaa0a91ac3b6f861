"""Our engine vs transformers' DeepseekV4ForCausalLM on the same ~20M-parameter checkpoint.

Both load one checkpoint (random weights, every V4 layer type) and run the same prompt:
prefill tokens/s and greedy decode ms/token, measured side by side in alternating rounds;
medians and the ratio are printed. Target: >= 5x faster decode.

    .venv/bin/python bench/bench_engine_vs_transformers.py [--prompt 512] [--decode 64] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
from hf_oracle import random_hf_model  # noqa: E402

from deepfim.engine.model.config import tiny_args  # noqa: E402
from deepfim.engine.model.loader import load_model  # noqa: E402

ARGS = tiny_args(
    vocab_size=8192, dim=256, n_layers=4, n_heads=4, head_dim=64, rope_head_dim=32, q_lora_rank=128,
    o_groups=2, o_lora_rank=128, compress_ratios=(0, 4, 128, 4), n_mtp_layers=0, index_n_heads=8,
    index_head_dim=32, index_topk=64, n_routed_experts=16, n_activated_experts=2, moe_inter_dim=256, n_hash_layers=1,
)  # fmt: skip


def time_ours(model, ids: torch.Tensor, n_decode: int) -> tuple[float, float]:
    with torch.inference_mode():
        state = model.new_state()
        t0 = time.perf_counter()
        logits = model(ids, state, logits="last").logits
        prefill = time.perf_counter() - t0
        token = logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(n_decode):
            token = model(token, state, logits="last").logits.argmax(-1)
        decode = time.perf_counter() - t0
    return ids.shape[1] / prefill, decode / n_decode * 1e3


def time_hf(model, ids: torch.Tensor, n_decode: int) -> tuple[float, float]:
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        prefill = time.perf_counter() - t0
        pkv, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(n_decode):
            out = model(input_ids=token, past_key_values=pkv, use_cache=True)
            pkv, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        decode = time.perf_counter() - t0
    return ids.shape[1] / prefill, decode / n_decode * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    hf = random_hf_model(ARGS, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        ours = load_model(tmp)
    params = sum(p.numel() for p in ours.parameters())
    ids = torch.randint(0, ARGS.vocab_size, (1, a.prompt), generator=torch.Generator().manual_seed(0))
    time_ours(ours, ids[:, :64], 4)  # warm-up both (allocator, C kernel build)
    time_hf(hf, ids[:, :64], 4)
    rows = {"ours": [], "transformers": []}
    for _ in range(a.rounds):
        rows["ours"].append(time_ours(ours, ids, a.decode))
        rows["transformers"].append(time_hf(hf, ids, a.decode))
    print(f"checkpoint: {params / 1e6:.1f}M params, prompt {a.prompt} tokens, {a.decode} decode steps, "
          f"{a.rounds} rounds, {a.threads} threads")  # fmt: skip
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in rows.items()}
    for name, (pre, dec) in med.items():
        print(f"{name:>12}: prefill {pre:8.0f} tok/s   decode {dec:7.2f} ms/token")
    print(f"{'ratio':>12}: prefill x{med['ours'][0] / med['transformers'][0]:.1f}   "
          f"decode x{med['transformers'][1] / med['ours'][1]:.1f} faster")  # fmt: skip


if __name__ == "__main__":
    main()
