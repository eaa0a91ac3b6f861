"""`deepfim bench [SUITE ...]`: runs the benchmark suites and writes report.md, results.json and
PNG plots to `--out`. `--quick` sizes every suite for CI (about 3 minutes on 2 cores).

    deepfim bench --quick --out /tmp/bench     # every suite, small
    deepfim bench latency scaling              # two suites at full size
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from deepfim.bench.suites import SUITES

    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"suites to run (default: all): {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="CI size: every suite small (about 3 minutes on 2 cores)")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-report"), help="folder for report.md, results.json, plots"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint directory (default: the embedded model)"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cuda: run the gpu suite (auto: when CUDA is present); the other suites measure the engine as it "
        "normally serves (the embedded model on the CPU)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every trace, prompt and random weight")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's, or $DEEPFIM_THREADS)"
    )
    parser.add_argument(
        "--scaling-minutes", type=float, default=None, metavar="MIN",
        help="time budget of the scaling suite: it stops before a stage estimated to exceed it "
        "(default: 1 quick, 30 full; past 256K tokens a CPU core needs well over an hour)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from deepfim.bench.suites import SUITES

    names = args.suites or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"deepfim bench: unknown suite(s) {unknown}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    if args.checkpoint is not None and not (args.checkpoint / "config.json").is_file():
        print(f"deepfim bench: --checkpoint {args.checkpoint}: no config.json there", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("deepfim bench: matplotlib is not installed (pip install 'deepfim[bench]')", file=sys.stderr)
        return 2
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        print("deepfim bench: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    from deepfim import env

    args.threads = args.threads or env.torch_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["DEEPFIM_THREADS"] = str(args.threads)  # the servers the suites start
    return _run_suites(args, names, device)


def _run_suites(args: argparse.Namespace, names: list[str], device: str) -> int:
    from deepfim.bench.context import BenchContext
    from deepfim.bench.machine import load_average, machine, versions
    from deepfim.bench.report import SuiteResult, markdown, write_json
    from deepfim.bench.suites import SUITES

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # a rerun into the same folder leaves no stale plots
        old.unlink()
    started, t0 = datetime.now(UTC), time.perf_counter()
    header = {
        "command": "deepfim bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:]),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "settings": {
            "suites": ", ".join(names),
            "quick": args.quick,
            "seed": args.seed,
            "device": device,
            "checkpoint": str(args.checkpoint or "embedded model"),
        },
    }
    results: list[SuiteResult] = []
    tmp = Path(tempfile.mkdtemp(prefix="deepfim-bench-"))
    ctx = BenchContext(
        quick=args.quick,
        out=out,
        tmp=tmp,
        checkpoint=args.checkpoint,
        device=device,
        seed=args.seed,
        threads=args.threads,
        scaling_budget_s=None if args.scaling_minutes is None else args.scaling_minutes * 60,
    )
    try:
        for name in names:
            result = SuiteResult(name)
            ctx.log(f"{name}: running ({'quick' if args.quick else 'full'})")
            s0, load_at_start = time.perf_counter(), load_average()
            try:
                importlib.import_module(SUITES[name]).run(ctx, result)
            except Exception as exc:  # noqa: BLE001 - one suite failing must not lose the others' figures
                result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
                result.notes.append("traceback: " + " | ".join(traceback.format_exc().strip().splitlines()[-6:]))
                ctx.log(f"{name}: FAILED: {exc}")
            result.seconds = time.perf_counter() - s0
            result.settings["load average at start, at end"] = f"{load_at_start} / {load_average()}"
            results.append(result)
            ctx.log(f"{name}: {result.status} in {result.seconds:.0f} s")
            _write(out, header, results, t0, load_average, markdown, write_json)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"deepfim bench: {out / 'report.md'}, {out / 'results.json'}")
    return 1 if any(r.status == "failed" for r in results) else 0


def _write(out, header, results, t0, load_average, markdown, write_json) -> None:
    """Rewritten after every suite, so a long run that is stopped keeps what it measured."""
    from deepfim.bench.machine import speed_probe

    header["wall_s"] = time.perf_counter() - t0
    header["machine"]["load average (1, 5, 15 min) at end"] = load_average()
    header["machine"]["CPU speed probe at end"] = speed_probe()
    write_json(out / "results.json", header, results)
    (out / "report.md").write_text(markdown(header, results), encoding="utf-8")
