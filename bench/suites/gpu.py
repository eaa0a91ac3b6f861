"""gpu: the Triton kernels and the engine on a CUDA device (skipped without one).

1. kernels: every case of bench/kernel_cases.py (V4-Flash shapes) — the Triton kernel against
   its torch reference on the same GPU, medians of triton's `do_bench`;
2. engine: the embedded model on the GPU against the same model on the CPU — greedy tokens
   and logits agree, GPU prefill tok/s and decode ms/token;
   (fp32 moved over, what `--device cuda` loads, that with CUDA graphs; bench/gpu_engine.py);
3. V4-Flash-shaped layers (bench/bench_flash_layers.py: 256 FP4 experts, FP8 attention, eager and
   CUDA graphs, extrapolated to 43 layers), its output attached.
Sized to finish within 5 minutes on one H200. Without CUDA: "skipped: no CUDA", no figures.
"""

from __future__ import annotations

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
    for part in (_kernels, _engine, _flash_layers):
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


def _engine(ctx: BenchContext, result: SuiteResult) -> None:
    """The embedded model on the GPU (fp32 moved over; what `--device cuda` loads; that with CUDA
    graphs) against the CPU, with bench/gpu_engine.py's `run`."""
    import torch

    from deepfim.bench.gpu_engine import run as timed_run
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.model.cuda_graph import GraphedDecode
    from deepfim.engine.model.device_setup import load_for_device
    from deepfim.engine.model.loader import load_model

    checkpoint = ctx.checkpoint or DEFAULT_MODEL_DIR
    prompt, n_decode = ctx.pick(256, 600), ctx.pick(8, 32)
    cpu_model = load_model(checkpoint)
    ids = torch.randint(0, cpu_model.args.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(ctx.seed))
    _, ref, _, _ = timed_run(cpu_model, ids, n_decode, lambda: None)
    device_model = load_for_device(checkpoint, "cuda")
    graphed = GraphedDecode(device_model)
    variants = (
        ("fp32", load_model(checkpoint).cuda(), None),
        ("device", device_model, None),
        ("graphs", device_model, lambda token, state: graphed(token, state, "last")[0]),
    )
    for name, model, step in variants:
        timed_run(model, ids.cuda(), 2, torch.cuda.synchronize, step)  # compile the kernels for these shapes
        _, got, prefill_s, times = timed_run(model, ids.cuda(), n_decode, torch.cuda.synchronize, step)
        agree = sum(int(g.argmax() == r.argmax()) for g, r in zip(got, ref, strict=True))
        result.add(
            single(
                f"engine.{name}.tokens_agree",
                f"engine ({name}) vs CPU: greedy tokens agree",
                agree,
                f"of {len(ref)}",
                "argmax of every decode step, same prompt",
                runs=len(ref),
                statistic="count",
            )
        )
        result.add(
            single(
                f"engine.{name}.prefill_tok_s",
                f"engine ({name}): prefill",
                prompt / prefill_s,
                "tok/s",
                f"{prompt}-token prompt in one call, synchronized",
            )
        )
        result.add(
            median_figure(
                f"engine.{name}.decode_ms",
                f"engine ({name}): decode",
                [t * 1e3 for t in times],
                "ms/token",
                "one greedy step each, synchronized",
            )
        )
    result.notes.append(f"CUDA graph capture: {graphed.failed or 'ok'}")


def _flash_layers(ctx: BenchContext, result: SuiteResult) -> None:
    """V4-Flash-shaped layers (bench/bench_flash_layers.py): its own report, attached as notes."""
    import subprocess
    import sys

    from deepfim.bench.machine import REPO

    cmd = [
        sys.executable,
        str(REPO / "bench" / "bench_flash_layers.py"),
        "--layers",
        str(ctx.pick(2, 4)),
        "--context",
        str(ctx.pick(1024, 4096)),
        "--tokens",
        str(ctx.pick(8, 32)),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    result.notes += [f"bench_flash_layers.py: {line}" for line in done.stdout.strip().splitlines()[-12:]]
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-300:])
