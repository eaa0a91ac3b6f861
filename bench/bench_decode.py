"""Decode and prefill speed of a checkpoint (default: the embedded model) on this machine.

Prefill: a `--context`-token prompt of real code through the engine's runner (128-token
chunks, as served). Decode: greedy ms/token after that prompt, median over `--tokens` steps,
without and with n-gram speculation (tokens per second of wall time).

    .venv/bin/python bench/bench_decode.py [--checkpoint DIR] [--context 4096] [--tokens 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from code_text import stdlib_files

from deepfim.engine.api import CompletionHandle, CompletionRequest, SamplingParams
from deepfim.engine.serving.generate import generate, load_runner
from deepfim.engine.serving.sequence import ActiveRequest
from deepfim.engine.serving.speculative import SpeculativeConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    runner = load_runner(a.checkpoint)
    runner.spec = SpeculativeConfig(enabled=False)
    tok = runner.tokenizer
    ids: list[int] = [tok.special.bos]
    for _, text in stdlib_files(a.context * 8):
        ids += tok.encode(text)
        if len(ids) >= a.context:
            break
    ids = ids[: a.context]
    params = SamplingParams(max_tokens=a.tokens, speculative=False)
    request = CompletionRequest(ids, params)
    req = ActiveRequest(request, CompletionHandle(request), None, tok)
    t0 = time.perf_counter()
    while req.prefilling:
        runner.advance(req)
    prefill_s = time.perf_counter() - t0
    steps = []
    cand = req.candidates[0]
    while not req.done:
        t0 = time.perf_counter()
        runner.advance(req)
        steps.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in runner.model.parameters())
    print(f"model {n_params / 1e6:.1f}M params, context {len(ids)} tokens, {a.threads} threads")
    print(f"prefill: {len(ids) / prefill_s:8.0f} tok/s ({prefill_s:.2f} s)")
    print(f"decode:  {statistics.median(steps) * 1e3:8.2f} ms/token median, p90 "
          f"{sorted(steps)[int(0.9 * len(steps))] * 1e3:.2f} ms ({len(cand.tokens)} tokens)")  # fmt: skip
    runner.spec = SpeculativeConfig(enabled=True)
    t0 = time.perf_counter()
    out = generate(runner, ids, SamplingParams(max_tokens=a.tokens))[0]
    total = time.perf_counter() - t0
    for source, stats in runner.draft_stats.as_dict().items():
        print(f"  {source} drafts: {stats['accepted']}/{stats['proposed']} accepted ({stats['acceptance']:.0%})")
    print(f"speculative: {len(out.token_ids) / total:6.1f} tok/s including a cold prefill ({total:.2f} s)")


if __name__ == "__main__":
    main()
