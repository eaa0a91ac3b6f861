"""scaling: prefill and decode against context length, up to a 1M-token packed context.

One packed repository context (CPython standard-library files with their file headers, as
the language server lays out the repository part) is fed to `LocalBackend` in growing
stages (1K, 4K, 16K, ... tokens), each stage a background-priority prefill-only request
that resumes from the previous stage's cached state, so each stage times only its own new
tokens (its marginal prefill rate at that depth). At each stage, with the state warm:
* decode: a greedy completion of `decode` tokens of the cached prompt, ms per token from
  the engine's decode timer alone (no prefill mixed in), speculation off;
* keystroke: two more tokens of the text and an 8-token completion, submit -> result;
* resident memory (VmRSS of this process) and the V4 state bytes (state_layout.py).
Stages stop when the next one would exceed the time budget (`--scaling-minutes`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from deepfim.bench import plots
from deepfim.bench.context import BenchContext
from deepfim.bench.corpus import packed_ids
from deepfim.bench.machine import rss_mb
from deepfim.bench.report import SuiteResult, Table
from deepfim.bench.state_layout import v4_state_bytes
from deepfim.bench.stats import median_figure, single

STAGE_HEADROOM = 64  # tokens a stage's decode (n_decode) and keystroke (2 + 8) requests add


def run(ctx: BenchContext, result: SuiteResult) -> None:
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.api import CompletionRequest, SamplingParams
    from deepfim.engine.model.config import ModelArgs
    from deepfim.engine.model.tokenizer import Tokenizer
    from deepfim.engine.serving.local_backend import LocalBackend, LocalBackendConfig
    from deepfim.engine.serving.speculative import SpeculativeConfig

    stages = ctx.pick([1024, 4096], [1024, 4096, 16384, 65536, 262144, 1048576])
    budget_s, n_decode = ctx.scaling_budget_s or ctx.pick(60.0, 1800.0), ctx.pick(8, 32)
    result.settings = {"stages": stages, "time budget s": budget_s, "decode tokens": n_decode}
    rss_start = rss_mb()
    _threads(ctx, result, ctx.pick(1024, 4096))
    config = LocalBackendConfig(
        cache_budget_bytes=ctx.pick(256 << 20, 3 << 30),
        threads=ctx.threads,
        speculative=SpeculativeConfig(enabled=False),
    )
    backend = LocalBackend(ctx.checkpoint, config=config)
    try:
        tok = Tokenizer.from_file(backend.tokenizer_path)
        model_args = ModelArgs.from_file(Path(ctx.checkpoint or DEFAULT_MODEL_DIR) / "config.json")
        # the last stage stops short of the checkpoint's longest context by what its decode and
        # keystroke requests add (a 1M-token stage on a 1M-token model: 1,048,576 - 64)
        stages = [min(length, model_args.max_seq_len - STAGE_HEADROOM) for length in stages]
        ids = packed_ids(tok, stages[-1] + 64)
        plain = SamplingParams(max_tokens=n_decode, speculative=False, token_healing=False, stop_loops=False)
        short = SamplingParams(max_tokens=8, speculative=False, token_healing=False, stop_loops=False)
        rows, progress, started, done_at = [], [(0.0, 0)], time.perf_counter(), 0
        for length in stages:
            elapsed = time.perf_counter() - started
            if rows and elapsed + _estimate(rows, length) > budget_s:
                result.notes.append(
                    f"stopped before {length:,} tokens: the estimate "
                    f"({_estimate(rows, length):.0f} s) exceeds the time budget ({budget_s:.0f} s)"
                )
                break
            try:
                request = CompletionRequest.prefill_ahead(ids[:length], (length,))
                handle = backend.submit(request)
                while not handle.done():
                    time.sleep(0.5)
                    progress.append((time.perf_counter() - started, getattr(handle, "prefilled", 0)))
                prefill = handle.result(60).timings
                progress.append((time.perf_counter() - started, length))
                decode = backend.submit(CompletionRequest(ids[:length], plain)).result(3600)
                t0 = time.perf_counter()
                key = backend.submit(CompletionRequest(ids[: length + 2], short)).result(3600)
                key_ms = (time.perf_counter() - t0) * 1000
                new = length - prefill.cached_tokens
                state = sum(v4_state_bytes(model_args, length).values())
                rows.append(
                    [
                        length,
                        new,
                        new / max(prefill.prefill_ms, 1e-6) * 1000,
                        prefill.prefill_ms / 1000,
                        decode.timings.decode_ms / max(decode.timings.generated_tokens, 1),
                        decode.timings.generated_tokens,
                        key_ms,
                        key.timings.prefill_ms,
                        key.timings.cached_tokens,
                        rss_mb(),
                        state / 2**20,
                        state / length,
                    ]
                )
                done_at = length
                ctx.log(
                    f"scaling: {length:,} tokens: prefill {rows[-1][2]:.0f} tok/s, decode {rows[-1][4]:.2f} ms/token, "
                    f"keystroke {key_ms:.0f} ms, RSS {rows[-1][9]:.0f} MB"
                )
            except Exception as exc:  # a failed stage keeps the stages before it in the report
                result.notes.append(f"the {length:,}-token stage failed: {type(exc).__name__}: {exc}")
                break
    finally:
        backend.close()
    _report(ctx, result, rows, progress, rss_start, done_at)


def _threads(ctx: BenchContext, result: SuiteResult, tokens: int) -> None:
    """Prefill with one thread and with every core: on a shared machine, OpenMP threads that
    wait for a busy core can make more threads much slower than one."""
    from deepfim.engine.api import CompletionRequest
    from deepfim.engine.model.tokenizer import Tokenizer
    from deepfim.engine.serving.local_backend import LocalBackend, LocalBackendConfig

    for threads in sorted({1, os.cpu_count() or 1}):
        backend = LocalBackend(ctx.checkpoint, config=LocalBackendConfig(threads=threads))
        try:
            ids = packed_ids(Tokenizer.from_file(backend.tokenizer_path), tokens)
            request = CompletionRequest.prefill_ahead(ids, (tokens,))
            ms = backend.submit(request).result(3600).timings.prefill_ms
        finally:
            backend.close()
        result.add(
            single(
                f"prefill_tok_s.threads_{threads}",
                f"prefill of {tokens:,} tokens, {threads} thread(s)",
                tokens / ms * 1000,
                "tok/s",
                "a cold prefill-only request / the engine's prefill time, "
                "with this many engine threads (the stages below use --threads or torch's default)",
            )
        )
    torch.set_num_threads(ctx.threads or os.cpu_count() or 1)  # the engine thread set it for the whole process


def _estimate(rows: list, length: int) -> float:
    """Seconds the next stage's prefill would take at the last stage's marginal rate (slowing
    with depth: the indexer scores every compressed entry)."""
    last = rows[-1]
    return (length - last[0]) / max(last[2], 1e-6) * 1.5


def _report(ctx: BenchContext, result: SuiteResult, rows: list, progress: list, rss_start: float, done_at: int) -> None:
    cols = [
        "context tokens",
        "new tokens",
        "prefill tok/s",
        "prefill s",
        "decode ms/token",
        "decoded",
        "keystroke ms",
        "keystroke prefill ms",
        "keystroke cached tok",
        "RSS MB",
        "state MiB",
        "state B/token",
    ]
    result.tables.append(
        Table(
            "Prefill and decode against context length",
            cols,
            rows,
            "one run per stage; prefill: the stage's new tokens / the engine's prefill time "
            "(background priority, resumed from the previous stage); decode: the engine's "
            "decode time / tokens of a warm greedy completion; keystroke: wall time of "
            "submit -> result for 2 new tokens + 8 generated",
        )
    )
    for r in rows:
        k = f"{r[0] // 1024}k"
        result.add(
            single(
                f"prefill_tok_s.{k}",
                f"prefill at {r[0]:,} tokens",
                r[2],
                "tok/s",
                f"{r[1]:,} new tokens (from {r[0] - r[1]:,} to {r[0]:,}) / engine prefill time, background",
            )
        )
        result.add(
            single(
                f"decode_ms.{k}",
                f"decode at {r[0]:,} tokens",
                r[4],
                "ms/token",
                f"engine decode time / {r[5]} greedy tokens after the warm prompt (no prefill)",
                runs=r[5],
                statistic="mean over tokens",
            )
        )
        result.add(
            single(
                f"keystroke_ms.{k}",
                f"keystroke at {r[0]:,} tokens (warm)",
                r[6],
                "ms",
                "submit -> result: prompt + 2 tokens (cached prefix), 8 tokens generated",
            )
        )
        result.add(
            single(
                f"rss_mb.{k}",
                f"resident memory at {r[0]:,} tokens",
                r[9],
                "MB",
                "VmRSS of the benchmark process (engine in-process) after the stage",
            )
        )
        result.add(
            single(
                f"state_bytes_per_token.{k}",
                f"V4 state at {r[0]:,} tokens",
                r[11],
                "B/token",
                "whole sequence state / tokens, from the checkpoint's layout",
                statistic="exact",
            )
        )
    if progress and len(progress) > 2:
        rates = [
            (p1 - p0) / (t1 - t0)
            for (t0, p0), (t1, p1) in zip(progress, progress[1:], strict=False)
            if t1 > t0 and p1 > p0
        ]
        result.add(
            median_figure(
                "background_prefill_tok_s",
                "background prefill rate over the whole run",
                rates,
                "tok/s",
                "tokens prefilled between 0.5 s progress polls of the background request "
                "(`handle.prefilled`) / the poll interval",
            )
        )
    result.add(
        single(
            "largest_context",
            "largest context reached",
            done_at,
            "tokens",
            "the last stage completed within the time budget",
            statistic="exact",
        )
    )
    result.notes.append(f"RSS before the engine loaded: {rss_start:.0f} MB")
    if not rows:
        return
    xs = [r[0] for r in rows]
    result.plots.append(
        plots.lines(
            ctx.out / "scaling_time.png",
            xs,
            {"prefill tok/s (marginal)": [r[2] for r in rows]},
            "prefill rate and per-token decode vs context",
            "context (tokens)",
            "prefill tok/s",
            right={"decode ms/token": [r[4] for r in rows], "keystroke ms": [r[6] for r in rows]},
            right_label="ms",
        )
    )
    result.plots.append(
        plots.lines(
            ctx.out / "scaling_memory.png",
            xs,
            {"resident memory (MB)": [r[9] for r in rows], "V4 state (MiB)": [r[10] for r in rows]},
            "memory vs context",
            "context (tokens)",
            "MB",
            logy=True,
        )
    )
