"""quality: `deepfim eval` — FIM quality of the main configurations and the context ablations.

Runs the product's own evaluation (engine/evaluation/cli.py) as a subprocess on a small task
count: held-out repositories (tree-sitter holes: line, mid-line, block) and HumanEval single-line
infilling; the copy baseline and the model at three context levels, then the model at the
repository level with one aid off each (similar code, definitions and members, index-aware
decoding, copy drafts, the files layout). Table and bar plot of the all-kinds rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from deepfim.bench import plots
from deepfim.bench.context import BenchContext
from deepfim.bench.report import SuiteResult, Table
from deepfim.bench.stats import single

MAIN_ORDER = ["copy/none", "copy/file", "copy/repository", "model/none", "model/file", "model/repository"]


def run(ctx: BenchContext, result: SuiteResult) -> None:
    per_kind, repos, humaneval = ctx.pick(1, 2), ctx.pick(1, 3), ctx.pick(3, 30)
    out = ctx.tmp / "eval.json"
    cmd = [
        sys.executable,
        "-m",
        "deepfim.cli",
        "eval",
        "--suites",
        "heldout,humaneval",
        "--langs",
        "python",
        "--per-kind",
        str(per_kind),
        "--max-repos",
        str(repos),
        "--humaneval-limit",
        str(humaneval),
        "--ablations",
        "--seed",
        str(ctx.seed),
        "--json",
        str(out),
        "--data",
        str(ctx.tmp / "eval-data"),
    ]
    if ctx.checkpoint:
        cmd += ["--checkpoint", str(ctx.checkpoint)]
    result.settings = {"command": "deepfim " + " ".join(cmd[3:]).replace(str(ctx.tmp), "$TMP")}
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(ctx.tmp / "eval-cache")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=ctx.pick(600, 1800))
    if done.returncode != 0:
        raise RuntimeError(f"deepfim eval exited {done.returncode}: {done.stderr.strip()[-400:]}")
    rows = [r for r in json.loads(out.read_text())["rows"] if r["hole"] in ("all", "single")]
    table, configs = [], []
    for r in rows:
        suite, config, n = r["suite"], r["config"], r["n"]
        how = f"`deepfim eval`, {suite} suite, {n} tasks (holes of every kind), seed {ctx.seed}"
        key = f"{suite}.{config}"
        result.add(
            single(
                f"{key}.edit_similarity",
                f"{suite} {config}: edit similarity",
                100 * r["edit_similarity"],
                "%",
                how,
                runs=n,
                statistic="mean over tasks",
            )
        )
        result.add(
            single(
                f"{key}.exact_match",
                f"{suite} {config}: exact match",
                100 * r["exact_match"],
                "%",
                how,
                runs=n,
                statistic="mean over tasks",
            )
        )
        if r["pass_at_1"] is not None:
            result.add(
                single(
                    f"{key}.pass_at_1",
                    f"{suite} {config}: pass@1",
                    100 * r["pass_at_1"],
                    "%",
                    how,
                    runs=n,
                    statistic="mean over tasks",
                )
            )
        table.append(
            [
                suite,
                config,
                n,
                100 * r["exact_match"],
                100 * r["edit_similarity"],
                None if r["pass_at_1"] is None else 100 * r["pass_at_1"],
                r["median_ms"],
                r["prompt_tokens"],
            ]
        )
        if config not in configs:
            configs.append(config)
    result.tables.append(
        Table(
            "deepfim eval",
            ["suite", "config", "tasks", "EM %", "edit sim %", "pass@1 %", "median ms", "prompt tokens"],
            table,
            "means over tasks; median ms: per completion, through the product's pipeline",
        )
    )
    configs.sort(key=lambda c: (MAIN_ORDER.index(c) if c in MAIN_ORDER else len(MAIN_ORDER), c))
    series = {}
    for suite in dict.fromkeys(r[0] for r in table):
        by_config = {r[1]: r[4] for r in table if r[0] == suite}
        series[f"{suite} edit sim %"] = [by_config.get(c) for c in configs]
    result.plots.append(
        plots.bars(
            ctx.out / "quality.png", configs, series, "FIM quality by configuration (deepfim eval)", "edit similarity %"
        )
    )
