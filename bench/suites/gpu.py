"""gpu: the Triton kernels and the engine on a CUDA device (skipped without one).

1. kernels: every case of bench/kernel_cases.py (V4-Flash shapes) — the Triton kernel against
   its torch reference on the same GPU, medians of triton's `do_bench`;
2. engine: the embedded model on the GPU against the same model on the CPU — greedy tokens
   and logits agree, GPU prefill tok/s and decode ms/token;
3. Flash-shaped: a random-weight model with V4-Flash's attention and MoE dimensions (one CSA
   and one HCA layer, bf16) — prefill tok/s and decode ms/token at a long context.
Sized to finish within 5 minutes on one H200. Without CUDA: "skipped: no CUDA", no figures.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

from deepfim.bench.context import BenchContext
from deepfim.bench.report import SuiteResult, Table
from deepfim.bench.stats import median_figure, single


def run(ctx: BenchContext, result: SuiteResult) -> None:
    import torch

    if not torch.cuda.is_available() or ctx.device != "cuda":
        result.status = "skipped"
        result.reason = "no CUDA" if not torch.cuda.is_available() else f"--device {ctx.device}"
        return
    result.settings = {"device": torch.cuda.get_device_name()}
    for part in (_kernels, _engine, _flash_shaped):
        try:
            part(ctx, result)
        except Exception as exc:  # noqa: BLE001 - one part failing keeps the others' figures
            result.notes.append(f"{part.__name__.strip('_')} failed: {type(exc).__name__}: {exc}")
    if not result.figures:
        result.status, result.reason = "failed", "; ".join(result.notes)


def _kernels(ctx: BenchContext, result: SuiteResult) -> None:
    from deepfim.bench.kernel_cases import OPS, timed_cases

    rep = ctx.pick(10, 40)
    rows = timed_cases(OPS, rep)
    how = f"triton.testing.do_bench median over a {rep} ms window, CUDA-synchronized"
    table = []
    for r in rows:
        key = f"kernel.{r['op']}.{r['case'].replace(' ', '_')}"
        result.add(single(key, f"{r['op']} {r['case']}: Triton", r["triton_us"], "us", how, statistic="median"))
        table.append(
            [
                r["op"],
                r["case"],
                r["triton_us"],
                r["ref_us"],
                r["speedup"],
                r["gbs"],
                r["tflops"],
                r["max_err"],
                r["peak"],
            ]
        )
    result.tables.append(
        Table(
            "Triton kernels vs torch references",
            ["op", "case", "triton us", "ref us", "speed-up", "GB/s", "TFLOP/s", "max err", "%peak"],
            table,
            how,
        )
    )


def _timed_run(model, ids, n_decode: int, sync) -> tuple[float, list[float], list]:
    import torch

    state = model.new_state()
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        logits = model(ids, state, logits="last").logits[0, -1].float()
        sync()
        prefill_s = time.perf_counter() - t0
        token, times, steps = logits.argmax().view(1, 1), [], [logits.cpu()]
        for _ in range(n_decode):
            t0 = time.perf_counter()
            logits = model(token.to(ids.device), state, logits="last").logits[0, -1].float()
            sync()
            times.append(time.perf_counter() - t0)
            steps.append(logits.cpu())
            token = logits.argmax().view(1, 1)
    return prefill_s, times, steps


def _engine(ctx: BenchContext, result: SuiteResult) -> None:
    import torch

    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.model.loader import load_model

    checkpoint = ctx.checkpoint or DEFAULT_MODEL_DIR
    prompt, n_decode = ctx.pick(256, 600), ctx.pick(8, 32)
    cpu_model, gpu_model = load_model(checkpoint), load_model(checkpoint).cuda()
    ids = torch.randint(0, cpu_model.args.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(ctx.seed))
    _timed_run(gpu_model, ids[:, :64].cuda(), 2, torch.cuda.synchronize)  # compile the kernels for these shapes
    _, _, ref = _timed_run(cpu_model, ids, n_decode, lambda: None)
    prefill_s, times, got = _timed_run(gpu_model, ids.cuda(), n_decode, torch.cuda.synchronize)
    agree = sum(int(g.argmax() == r.argmax()) for g, r in zip(got, ref, strict=True))
    err = max((g - r).abs().max().item() for g, r in zip(got, ref, strict=True))
    result.add(
        single(
            "engine.tokens_agree",
            "engine GPU vs CPU: greedy tokens agree",
            agree,
            f"of {len(ref)}",
            "argmax of the prefill and every decode step, same prompt",
            runs=len(ref),
            statistic="count",
        )
    )
    result.add(
        single(
            "engine.max_logit_diff",
            "engine GPU vs CPU: max |logits difference|",
            err,
            "",
            "over the prefill and every decode step",
            runs=len(ref),
            statistic="max",
        )
    )
    result.add(
        single(
            "engine.gpu_prefill_tok_s",
            "embedded model on the GPU: prefill",
            prompt / prefill_s,
            "tok/s",
            f"{prompt}-token prompt in one call, synchronized",
        )
    )
    result.add(
        median_figure(
            "engine.gpu_decode_ms",
            "embedded model on the GPU: decode",
            [t * 1e3 for t in times],
            "ms/token",
            "one greedy step each, synchronized",
        )
    )


def _flash_shaped(ctx: BenchContext, result: SuiteResult) -> None:
    import torch

    from deepfim.bench.state_layout import FLASH
    from deepfim.engine.model.transformer import Transformer

    context, n_decode = ctx.pick(2048, 16384), ctx.pick(4, 32)
    args = dataclasses.replace(
        FLASH, n_layers=2, compress_ratios=(4, 128), layer_kinds=(), n_hash_layers=0, n_mtp_layers=0, vocab_size=8192
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = Transformer(args).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.fill_(1.0) if name.endswith("norm.weight") else p.normal_(0.0, 0.02)
    finally:
        torch.set_default_dtype(default)
    ids = torch.randint(0, args.vocab_size, (1, context), generator=torch.Generator().manual_seed(ctx.seed)).cuda()
    _timed_run(model, ids[:, :256], 2, torch.cuda.synchronize)
    prefill_s, times, _ = _timed_run(model, ids, n_decode, torch.cuda.synchronize)
    params = sum(p.numel() for p in model.parameters())
    shape = f"V4-Flash dimensions, 1 CSA + 1 HCA layer, {params / 1e9:.1f}B parameters, bf16, random weights"
    result.add(
        single(
            "flash.prefill_tok_s",
            f"Flash-shaped prefill, {context:,} tokens",
            context / prefill_s,
            "tok/s",
            f"{shape}: one forward of the prompt, synchronized",
        )
    )
    result.add(
        median_figure(
            "flash.decode_ms",
            f"Flash-shaped decode at {context:,} tokens",
            [t * 1e3 for t in times],
            "ms/token",
            f"{shape}: one greedy step each",
        )
    )
    result.notes.append(f"Flash-shaped decode: median {statistics.median(times) * 1e3:.2f} ms over {n_decode} steps")
