"""Run FIM tasks through a model and score them; aggregate into table rows.

Prompts use `deepfim.engine.training.layout.pack_fim_prompt`, the training layout. The
cursor window is the same with and without cross-file context (`cursor_tokens`), so the
"context" comparison measures only the other files of the package.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass

from deepfim.engine.evaluation.humaneval import program, run_programs
from deepfim.engine.evaluation.metrics import edit_similarity, exact_match
from deepfim.engine.evaluation.models import FimModel
from deepfim.engine.evaluation.tasks import FimTask, finalize
from deepfim.engine.model.prompt_format import FimOrder, Prompt
from deepfim.engine.training.layout import pack_fim_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    order: FimOrder = FimOrder.PSM
    max_prompt_tokens: int = 1536
    cursor_tokens: int = 768
    max_new_tokens_single: int = 48
    max_new_tokens_multi: int = 192
    test_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not 64 <= self.cursor_tokens <= self.max_prompt_tokens:
            raise ValueError(
                f"cursor_tokens must be in [64, max_prompt_tokens={self.max_prompt_tokens}], got {self.cursor_tokens}"
            )


@dataclass
class TaskResult:
    model: str
    task_id: str
    suite: str
    lang: str
    kind: str
    context: bool
    prompt_tokens: int
    prediction: str
    exact: bool
    edit_sim: float
    passed: bool | None = None
    seconds: float = 0.0


class PromptBuilder:
    """Packs tasks into prompts for one tokenizer, caching encoded file texts."""

    def __init__(self, model: FimModel, settings: EvalSettings) -> None:
        self.tok, self.settings = model.tokenizer, settings
        self._encoded: dict[str, list[int]] = {}

    def _encode(self, key: str, text: str) -> list[int]:
        if key not in self._encoded:
            self._encoded[key] = self.tok.encode(text)
        return self._encoded[key]

    def build(self, task: FimTask, with_context: bool) -> Prompt:
        s = self.settings
        prefix_ids, suffix_ids = self.tok.encode_batch([task.prefix, task.suffix])
        context = []
        if with_context:
            context = [(p, self._encode(f"{task.repo}/{p}", text)) for p, text in task.context_files]
        return pack_fim_prompt(
            self.tok, prefix_ids, suffix_ids, order=s.order, max_tokens=s.max_prompt_tokens,
            path=task.path, repo=task.repo, context=context, cursor_tokens=s.cursor_tokens,
        )  # fmt: skip


def run_tasks(model: FimModel, tasks: list[FimTask], with_context: bool, settings: EvalSettings) -> list[TaskResult]:
    """Completes and scores every task; HumanEval tasks also run their tests (subprocesses)."""
    builder = PromptBuilder(model, settings)
    results = []
    for i, task in enumerate(tasks):
        prompt = builder.build(task, with_context)
        budget = settings.max_new_tokens_single if task.kind == "single" else settings.max_new_tokens_multi
        start = time.perf_counter()
        prediction = finalize(task, model.complete(prompt, budget))
        elapsed = time.perf_counter() - start
        results.append(
            TaskResult(
                model.name, task.task_id, task.suite, task.lang, task.kind, with_context, len(prompt),
                prediction, exact_match(prediction, task.middle), edit_similarity(prediction, task.middle),
                seconds=elapsed,
            )
        )  # fmt: skip
        if (i + 1) % 50 == 0:
            log.info("%s: %d/%d tasks", model.name, i + 1, len(tasks))
    runnable = [(r, t) for r, t in zip(results, tasks, strict=True) if t.suite == "humaneval"]
    if runnable:
        outcomes = run_programs([program(t, r.prediction) for r, t in runnable], timeout=settings.test_timeout)
        for (r, _), outcome in zip(runnable, outcomes, strict=True):
            r.passed = outcome.passed
    return results


def aggregate(results: list[TaskResult]) -> list[dict]:
    """Rows per (model, suite, lang, kind, context) plus an all-holes row per (model, suite, context)."""
    groups: dict[tuple, list[TaskResult]] = defaultdict(list)
    for r in results:
        groups[(r.model, r.suite, r.lang, r.kind, r.context)].append(r)
        groups[(r.model, r.suite, "all", "all", r.context)].append(r)
    rows = []
    for (model, suite, lang, kind, context), rs in groups.items():
        if lang == "all" and len({(r.lang, r.kind) for r in rs}) < 2:
            continue  # the total of one group is that group
        passed = [r.passed for r in rs if r.passed is not None]
        rows.append(
            {
                "model": model, "suite": suite, "lang": lang, "hole": kind, "context": context, "n": len(rs),
                "exact_match": sum(r.exact for r in rs) / len(rs),
                "edit_similarity": sum(r.edit_sim for r in rs) / len(rs),
                "pass_at_1": sum(passed) / len(passed) if passed else None,
                "seconds_per_task": sum(r.seconds for r in rs) / len(rs),
            }
        )  # fmt: skip
    rows.sort(key=lambda r: (r["suite"], r["lang"] == "all", r["lang"], r["hole"], r["model"], r["context"]))
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = "| suite | lang | hole | model | cross-file context | n | EM | edit sim | pass@1 |"
    lines = [head, "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        p1 = "" if r["pass_at_1"] is None else f"{100 * r['pass_at_1']:.1f}"
        ctx = "—" if r["suite"] == "humaneval" else ("with" if r["context"] else "without")
        lines.append(
            f"| {r['suite']} | {r['lang']} | {r['hole']} | {r['model']} | {ctx} | {r['n']} | "
            f"{100 * r['exact_match']:.1f} | {100 * r['edit_similarity']:.1f} | {p1} |"
        )
    return "\n".join(lines)


def results_json(results: list[TaskResult]) -> list[dict]:
    return [asdict(r) for r in results]
