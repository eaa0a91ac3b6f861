"""Per-keystroke latency with a large packed context: warm prefix cache vs cold.

Builds a suffix-first (SPM) prompt of about `--context` tokens (CPython files as the
repository part, then a cursor file), as the language server packs it, and runs it through
`LocalBackend`:
* cold: an empty cache, the whole prompt is prefilled (what the first keystroke costs);
* warm typing: `--keystrokes` requests, each appending one typed character at the cursor;
* warm edit: a change in the middle of the cursor file (its tail is recomputed);
* same again: the cold prompt once more (an exact hit: no prefill at all).
Each request generates `--max-tokens` greedy tokens (instant mode). Prints p50/p95 latency,
prefill and decode time, and the share of prompt tokens served from the cache.

    .venv/bin/python bench/bench_prefix_cache.py [--checkpoint DIR] [--context 100000] [--keystrokes 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from code_text import stdlib_files

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.prompt_format import (
    FimOrder,
    Prompt,
    file_header_ids,
    file_segment_ids,
    fim_ids,
    repo_header_ids,
)
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.local_backend import LocalBackend, LocalBackendConfig
from deepfim.engine.serving.speculative import SpeculativeConfig

CURSOR_PREFIX = "def summarise(orders):\n    total = 0\n    for order in orders:\n        total += order."
CURSOR_SUFFIX = "\n    return total\n"


def build(tok: Tokenizer, repo: list[tuple[str, list[int]]], prefix: str) -> list[int]:
    prompt = Prompt(order=FimOrder.SPM)
    prompt.add("header", repo_header_ids(tok, "cpython"))
    for path, ids in repo:
        prompt.add("file", file_segment_ids(tok, path, ids), path)
    prompt.add("cursor_file", file_header_ids(tok, "report.py"))
    stable, volatile = fim_ids(tok, tok.encode(prefix), tok.encode(CURSOR_SUFFIX), FimOrder.SPM)
    return prompt.ids + stable + volatile


def timed(backend: LocalBackend, ids: list[int], max_tokens: int) -> dict:
    t0 = time.perf_counter()
    request = CompletionRequest(ids, SamplingParams(max_tokens=max_tokens, speculative=False))
    result = backend.submit(request).result(3600)
    ms = (time.perf_counter() - t0) * 1e3
    t = result.timings
    return {"ms": ms, "prefill": t.prefill_ms, "decode": t.decode_ms, "cached": t.cached_tokens / t.prompt_tokens}


def summary(name: str, rows: list[dict]) -> None:
    lat = sorted(r["ms"] for r in rows)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    print(f"{name:>12}: n={len(rows):3d}  p50 {statistics.median(lat):9.1f} ms  p95 {p95:9.1f} ms  "
          f"prefill {statistics.median(r['prefill'] for r in rows):9.1f} ms  "
          f"decode {statistics.median(r['decode'] for r in rows):7.1f} ms  "
          f"cached {statistics.median(r['cached'] for r in rows):6.1%}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--context", type=int, default=100_000)
    p.add_argument("--keystrokes", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    backend = LocalBackend(a.checkpoint, config=LocalBackendConfig(cache_budget_bytes=8 << 30,
                                                             speculative=SpeculativeConfig(enabled=False)))  # fmt: skip
    tok = Tokenizer.from_file(backend.tokenizer_path)
    repo, total = [], 0
    for path, text in stdlib_files(a.context * 5):
        ids = tok.encode(text)
        repo.append((path, ids))
        total += len(ids) + 8
        if total >= a.context:
            break
    base = build(tok, repo, CURSOR_PREFIX)
    print(f"prompt: {len(base)} tokens ({len(repo)} repository files + cursor file), SPM order")
    cold = [timed(backend, base, a.max_tokens)]
    typed = "quantity * order.price"
    warm = []
    for i in range(1, min(a.keystrokes, len(typed)) + 1):
        warm.append(timed(backend, build(tok, repo, CURSOR_PREFIX + typed[:i]), a.max_tokens))
    edit = [timed(backend, build(tok, repo, CURSOR_PREFIX.replace("total = 0", "total = 0.0") + typed), a.max_tokens)]
    again = [timed(backend, base, a.max_tokens)]
    summary("cold", cold)
    summary("warm typing", warm)
    summary("warm edit", edit)
    summary("same again", again)
    print(f"warm/cold latency ratio: {statistics.median(r['ms'] for r in warm) / cold[0]['ms']:.4f}")
    print("cache:", backend.stats()["checkpoints"][next(iter(backend.stats()["checkpoints"]))]["cache"])
    backend.close()


if __name__ == "__main__":
    main()
