"""`deepfim eval`: held-out FIM holes (with and without cross-file context) and HumanEval infilling.

    deepfim eval --models copy --json runs/eval-copy.json
    deepfim eval --checkpoint runs/nano/ --limit 20

Prints a markdown table (EM, edit similarity, pass@1); `--json` also writes every task's
prediction. Held-out holes need a built corpus (`python -m deepfim.engine.training.corpus`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Holes per language: (single-line, multi-line). Sized so the default run of a ~10M-parameter
# model takes a few minutes on 2 cores.
DEFAULT_HOLES = {"python": (100, 50), "typescript": (50, 25), "javascript": (30, 15)}
SUITES = ("heldout", "humaneval")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="built corpus (held-out split)")
    parser.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated subset of {SUITES}")
    parser.add_argument(
        "--models", default=None,
        help="comma-separated: copy (n-gram baseline), checkpoint (the engine's model). "
        "Default: copy, plus checkpoint when --checkpoint is given or the embedded model has weights",
    )  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint directory (default: embedded model)")
    parser.add_argument("--langs", default="python,typescript", help=f"held-out languages, of {sorted(DEFAULT_HOLES)}")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most N holes per language and kind, N HumanEval tasks"
    )
    parser.add_argument("--humaneval-all-lines", action="store_true", help="every solution line, not one per problem")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--order", choices=("psm", "spm"), default=None,
        help="FIM order of the prompts (default: spm when the checkpoint was trained on it, else psm)",
    )  # fmt: skip
    parser.add_argument("--max-prompt-tokens", type=int, default=1536)
    parser.add_argument(
        "--cursor-tokens", type=int, default=768, help="prefix+suffix budget (same with/without context)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per HumanEval test run")
    parser.add_argument("--json", type=Path, default=None, help="write rows and per-task predictions here")


def _parse_list(value: str, allowed, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise ValueError(f"{option}: unknown value(s) {bad or value!r}; choose from {sorted(allowed)}")
    return items


def _models(args: argparse.Namespace, tokenizer):
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.evaluation.models import CopyBaseline, load_model

    if args.models is None:
        names = ["copy"]
        if args.checkpoint is not None or (DEFAULT_MODEL_DIR / "config.json").is_file():
            names.append("checkpoint")
        else:
            log.warning("no --checkpoint and no trained embedded model: evaluating the copy baseline only")
    else:
        names = _parse_list(args.models, {"copy", "checkpoint"}, "--models")
    models = []
    for name in names:
        models.append(CopyBaseline(tokenizer) if name == "copy" else load_model(args.checkpoint))
    return models


def collect_tasks(args: argparse.Namespace, suites: list[str]) -> list:
    from deepfim.engine.evaluation.holes import extract_holes
    from deepfim.engine.evaluation.humaneval import load_problems, single_line_tasks
    from deepfim.engine.training.corpus import load_corpus

    tasks = []
    if "heldout" in suites:
        files = load_corpus(args.corpus, "heldout")
        for lang in _parse_list(args.langs, DEFAULT_HOLES, "--langs"):
            n_single, n_multi = DEFAULT_HOLES[lang]
            if args.limit is not None:
                n_single, n_multi = min(n_single, args.limit), min(n_multi, args.limit)
            tasks += extract_holes(files, lang, n_single, n_multi, seed=args.seed)
    if "humaneval" in suites:
        he = single_line_tasks(load_problems(), seed=args.seed, all_lines=args.humaneval_all_lines)
        tasks += he[: args.limit] if args.limit is not None else he
    return tasks


def _best_order(checkpoint) -> str:
    """SPM when the checkpoint declares it: the prefix then sits next to the middle, inside the
    sliding window; with PSM the suffix comes between them."""
    from deepfim.engine.model.config import ConfigError, ModelArgs

    try:
        return "spm" if "spm" in ModelArgs.from_file(checkpoint).fim_orders else "psm"
    except ConfigError:
        return "psm"


def run(args: argparse.Namespace) -> int:
    from deepfim.engine.evaluation.models import ModelUnavailableError

    try:
        return _run(args)
    except (ValueError, FileNotFoundError, ModelUnavailableError) as exc:
        log.error("%s", exc)
        return 2


def _run(args: argparse.Namespace) -> int:
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.evaluation.harness import EvalSettings, aggregate, markdown_table, results_json, run_tasks
    from deepfim.engine.model.prompt_format import FimOrder
    from deepfim.engine.model.tokenizer import Tokenizer

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be ≥ 1, got {args.limit}")
    suites = _parse_list(args.suites, SUITES, "--suites")
    settings = EvalSettings(
        order=FimOrder(args.order or _best_order(args.checkpoint or DEFAULT_MODEL_DIR)),
        max_prompt_tokens=args.max_prompt_tokens,
        cursor_tokens=args.cursor_tokens, test_timeout=args.timeout,
    )  # fmt: skip
    models = _models(args, Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json"))
    tasks = collect_tasks(args, suites)
    heldout = [t for t in tasks if t.suite == "heldout"]
    humaneval = [t for t in tasks if t.suite == "humaneval"]
    log.info("%d held-out holes, %d HumanEval tasks", len(heldout), len(humaneval))
    results = []
    for model in models:
        for with_context in (False, True):
            results += run_tasks(model, heldout, with_context, settings)
        results += run_tasks(model, humaneval, False, settings)
    rows = aggregate(results)
    print(markdown_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": {**vars(settings), "order": settings.order.value, "seed": args.seed, "limit": args.limit},
            "rows": rows,
            "tasks": results_json(results),
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return 0
