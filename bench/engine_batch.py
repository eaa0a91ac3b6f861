"""The engine alone, batched: what continuous batching buys on this machine, without HTTP, TLS or
a load generator sharing the cores.

B sequences, each a different real file (a CPython stdlib module, `prompt_tokens` long), are
prefilled (not timed), then decode `new_tokens` each in the engine's own steps (`ModelRunner.step`
with all of them in the batch: one C call per step on the CPU). Per B: the decode wall time per
step, per generated token, and the generated tokens per second, relative to B = 1. On the CPU
with the embedded model (29 MB of weights, in cache) a step of one sequence is already bound by
arithmetic, not by reading weights, so a batch saves little per token; the figures say how
little, and so what the team server can gain from batching here.
"""

from __future__ import annotations

import time

import torch

from deepfim.bench.corpus import stdlib_token_files
from deepfim.engine.api import CompletionHandle, CompletionRequest, SamplingParams
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.sequence import ActiveRequest

ROUNDS = 3  # per batch size; the figures are the median round's


def decode_rows(runner: ModelRunner, batch_sizes: list[int], prompt_tokens: int, new_tokens: int) -> list[dict]:
    """One dict per batch size: steps, decode ms per step and per token, tokens/s (the median of
    ROUNDS rounds)."""
    prompts = [ids[:prompt_tokens] for ids in stdlib_token_files(runner.tokenizer, max(batch_sizes), prompt_tokens)]
    rows = []
    for b in batch_sizes:
        runs = []
        for _ in range(ROUNDS):
            reqs = []
            for i in range(b):
                # greedy, one token per step (no drafts), no loop rule: each decodes new_tokens
                # (unless it writes its end of text)
                params = SamplingParams(max_tokens=new_tokens, speculative=False, stop_loops=False)
                request = CompletionRequest(prompts[i], params, namespace=f"bench{i}")
                reqs.append(ActiveRequest(request, CompletionHandle(request), None, runner.tokenizer))
            while any(r.prefilling for r in reqs):  # prefill, not timed
                runner.step([r for r in reqs if r.prefilling])
            steps, t0 = 0, time.perf_counter()
            while live := [r for r in reqs if not r.done]:
                runner.step(live)
                steps += 1
            elapsed = time.perf_counter() - t0
            generated = sum(len(r.candidates[0].tokens) for r in reqs)
            runs.append((elapsed, steps, generated))
        elapsed, steps, generated = sorted(runs)[len(runs) // 2]
        rows.append({
            "batch": b, "steps": steps, "generated": generated, "ms_per_step": 1000 * elapsed / max(steps, 1),
            "ms_per_token": 1000 * elapsed / max(generated, 1), "tok_per_s": generated / elapsed,
        })  # fmt: skip
    return rows


def run_decode_rows(batch_sizes: list[int], prompt_tokens: int, new_tokens: int, checkpoint=None) -> list[dict]:
    from deepfim.engine.serving.generate import load_runner

    with torch.inference_mode():
        return decode_rows(load_runner(checkpoint), batch_sizes, prompt_tokens, new_tokens)
