"""`deepfim eval`: FIM quality on held-out and real repositories and HumanEval, through the product.

    deepfim eval                          # held-out repositories + HumanEval, the main table
    deepfim eval --fetch                  # once: the real repositories (PyPI source distributions)
    deepfim eval --suites repos --ablations --json data/eval/report.json

Configurations (columns): the copy baseline and the model at three context levels — none
(the cursor window only), file (+ the cursor file's copy and evidence from it), repository
(+ the repository part and evidence from the whole workspace) — and with `--ablations` the
model at the repository level with one aid switched off each (similar code, definitions and
members, index-aware decoding, copy drafts). Prints a markdown table; `--json` also writes
every task's prediction. Works from a fresh clone (held-out CPython packages come from the
interpreter when no corpus is built).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from deepfim.devices import add_device_arguments

log = logging.getLogger(__name__)

SUITES = ("heldout", "repos", "humaneval")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--suites", default="heldout,repos,humaneval", help=f"comma-separated subset of {SUITES}")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint directory (default: embedded model)")
    add_device_arguments(parser, quantized=False)
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="built corpus (its held-out split)")
    parser.add_argument("--data", type=Path, default=Path("data/eval"), help="where evaluation repositories live")
    parser.add_argument("--fetch", action="store_true", help="download the real repositories first (PyPI sdists)")
    parser.add_argument("--langs", default="python,typescript", help="held-out languages (default: %(default)s)")
    parser.add_argument("--per-kind", type=int, default=4, help="holes of each kind per repository (default: 4)")
    parser.add_argument("--max-repos", type=int, default=None, help="at most this many repositories per suite")
    parser.add_argument("--humaneval-limit", type=int, default=None, help="at most N HumanEval tasks")
    parser.add_argument("--configs", default=None,
                        help="comma-separated configuration names (default: the main table; see --list)")  # fmt: skip
    parser.add_argument("--ablations", action="store_true", help="add the ablation configurations")
    parser.add_argument("--list", action="store_true", help="list the configurations and exit")
    parser.add_argument("--seed", type=int, default=0, help="hole sampling seed (default: 0)")
    parser.add_argument("--json", type=Path, default=None, help="write rows and per-task predictions here")


def _parse_list(value: str, allowed, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise ValueError(f"{option}: unknown value(s) {bad or value!r}; choose from {sorted(allowed)}")
    return items


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"deepfim eval: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from deepfim.devices import resolve_device
    from deepfim.engine.evaluation.configs import ABLATIONS, MAIN, make_session
    from deepfim.engine.evaluation.gate import gate_rows, gate_table
    from deepfim.engine.evaluation.harness import Evaluator, aggregate, markdown_table, results_json
    from deepfim.engine.evaluation.holes import HOLE_LANGUAGES, repo_holes
    from deepfim.engine.evaluation.humaneval import load_problems, single_line_tasks
    from deepfim.engine.evaluation.suites import fetched_repos, heldout_repos

    resolve_device(args.device)  # "no CUDA device: ..." before any work
    configs = {c.name: c for c in [*MAIN, *ABLATIONS]}
    if args.list:
        for c in configs.values():
            print(f"{c.name:<24} {c.describe()}")
        return 0
    chosen = [*MAIN, *(ABLATIONS if args.ablations else ())]
    if args.configs:
        chosen = [configs[n] for n in _parse_list(args.configs, configs, "--configs")]
    suites = _parse_list(args.suites, SUITES, "--suites")
    langs = tuple(_parse_list(args.langs, HOLE_LANGUAGES, "--langs"))
    for option, value in (("--per-kind", args.per_kind), ("--max-repos", args.max_repos),
                          ("--humaneval-limit", args.humaneval_limit)):  # fmt: skip
        if value is not None and value < 1:  # 0 would evaluate nothing and still print a table
            raise ValueError(f"{option} must be at least 1, got {value}")
    if args.fetch:
        from deepfim.engine.training.sdists import fetch_eval_repos

        fetch_eval_repos(args.data / "repos", progress=lambda msg: print(msg, file=sys.stderr))
    repos = []
    if "heldout" in suites:
        repos += heldout_repos(args.corpus, args.data / "heldout", langs)[: args.max_repos]
    if "repos" in suites:
        found = fetched_repos(args.data / "repos")
        if not found:
            print("deepfim eval: no real repositories yet; run `deepfim eval --fetch` once", file=sys.stderr)
        repos += found[: args.max_repos]
    humaneval = []
    if "humaneval" in suites:
        humaneval = single_line_tasks(load_problems(), seed=args.seed)[: args.humaneval_limit]
    tasks = {r.name: repo_holes(r.files(), r.name, r.suite, args.per_kind, args.seed) for r in repos}
    total = sum(map(len, tasks.values())) + len(humaneval)
    print(f"deepfim eval: {len(repos)} repositories, {total} tasks, {len(chosen)} configurations", file=sys.stderr)
    results = []
    for cfg in chosen:
        session = make_session(args.checkpoint, cfg, args.device)
        evaluator = Evaluator(session)
        try:
            for repo in repos:
                results += evaluator.run_repo(repo, tasks[repo.name], cfg)
            if humaneval and cfg.level.value != "none":
                results += evaluator.run_loose(humaneval, cfg)
        finally:
            evaluator.close()
            session.close()
        print(f"deepfim eval: {cfg.name} done", file=sys.stderr)
    rows = aggregate(results)
    print(markdown_table(rows))
    gated = [r for r in results if r.config == "model/repository"]
    if gated:
        print("\nconfidence gate, model/repository (engine/evaluation/gate.py):")
        print(gate_table(gate_rows(gated)))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": {"seed": args.seed, "per_kind": args.per_kind, "checkpoint": str(args.checkpoint or "")},
            "configs": [c.describe() for c in chosen],
            "rows": rows,
            "gate": gate_rows(gated),
            "tasks": results_json(results),
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return 0
