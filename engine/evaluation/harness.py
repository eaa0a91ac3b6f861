"""Run FIM tasks through the product and score them; aggregate into table rows.

Every task goes the way an editor's request goes: the repository is a `Workspace` on disk
(`ContextSource`, the language server's own), the files the holes are cut from are marked
edited before the repository part is built (so the part never shows a hole's answer: the
file reaches the prompt as its copy, the buffer with the hole removed, as it would after
the developer started writing there), the cursor file's buffer is set to the text around
the hole, and the completion runs through `CompletionPipeline` (prompt, engine with the
checkpoint's decoding aids, shaping) in instant mode's settings. The copy baseline reads
the same prompt. `finalize` applies the same cut to every answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from deepfim.context.evidence import EvidenceOptions
from deepfim.context.languages import for_editor
from deepfim.context.prompt_builder import BuiltPrompt, ContextLevel, PromptSpec
from deepfim.engine.api import Mode, Priority, SamplingParams
from deepfim.engine.evaluation.humaneval import program, run_programs
from deepfim.engine.evaluation.metrics import edit_similarity, exact_match
from deepfim.engine.evaluation.models import copy_completion
from deepfim.engine.evaluation.suites import EvalRepo
from deepfim.engine.evaluation.tasks import FimTask, finalize
from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.lsp_server.backend_session import BackendSession
from deepfim.lsp_server.context_source import ContextSource
from deepfim.lsp_server.modes import ModePreset, prompt_spec
from deepfim.lsp_server.pipeline import CompletionInput, CompletionPipeline
from deepfim.lsp_server.shaping.shape import analyse, shape

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = {"line": 48, "midline": 48, "single": 48, "block": 192}


@dataclass(frozen=True)
class EvalConfig:
    """One column of the results: what the prompt holds and how the model decodes."""

    name: str
    model: str = "model"  # "model" | "copy"
    level: ContextLevel = ContextLevel.REPOSITORY
    evidence: EvidenceOptions = EvidenceOptions()
    context_budget: int = 4096  # the language server's default contextBudget
    repository_budget: int | None = None  # None: the checkpoint's profile


@dataclass
class TaskResult:
    config: str
    model: str
    task_id: str
    suite: str
    repo: str
    lang: str
    kind: str
    level: str
    prompt_tokens: int
    prediction: str
    exact: bool
    edit_sim: float
    score: float | None  # mean log-probability per token (the confidence gate's input)
    ms: float
    passed: bool | None = None


def _preset(task: FimTask, cfg: EvalConfig) -> ModePreset:
    sampling = SamplingParams(temperature=0.0, max_tokens=MAX_NEW_TOKENS[task.kind])
    max_lines = 1 if task.single_line else 12
    # confidence_gate=False: every suggestion is scored; the gate's effect is its own table (gate.py)
    return ModePreset(Mode.INSTANT, cfg.context_budget, cfg.repository_budget, False, 1, max_lines, sampling,
                      Priority.INSTANT, debounce=False)  # fmt: skip


def task_spec(task: FimTask, cfg: EvalConfig, profile: ServingProfile) -> PromptSpec:
    """The prompt spec instant mode would use for `task`, at the configuration's level."""
    return dataclasses.replace(prompt_spec(_preset(task, cfg), profile), level=cfg.level, evidence=cfg.evidence)


def repository_source(
    root: Path, hole_paths: list[str], tok: Tokenizer, spec: PromptSpec, cache_dir: Path
) -> ContextSource:
    """The language server's context source on `root`, with the hole files marked edited and,
    at repository level, the part built (and fixed) before any hole is cut."""
    source = ContextSource(root, cache_dir=cache_dir)
    source.scan()
    for path in hole_paths:
        source.note_edited(root / path)  # the hole files reach the prompt as copies
    if spec.level is ContextLevel.REPOSITORY:
        source.served = source.repository_part(tok, spec.budget.repository)
    return source


def hold_buffer(source: ContextSource, path: Path, task: FimTask) -> None:
    """The editor holds `path` with the hole removed; its copy is fixed from that buffer."""
    source.update_buffer(path, task.prefix + task.suffix)
    source.snapshot_copy(path)
    # re-parse the buffer into the index now (`stats` does): a prompt never re-parses its own
    # cursor file, and the entry parsed from disk (the copy's summary, definitions) shows the answer
    source.stats()


def task_prompt(source: ContextSource, tok: Tokenizer, path: Path, task: FimTask, spec: PromptSpec) -> BuiltPrompt:
    """The prompt a completion at the hole sends (what `CompletionPipeline` packs)."""
    return source.pack(tok, path, task.prefix, task.suffix, spec).built


class Evaluator:
    """Runs tasks of one configuration against one backend session."""

    def __init__(self, session: BackendSession) -> None:
        self.session = session
        self.tok = session.tokenizer
        self.pipeline = CompletionPipeline()
        self._cache_dir = Path(tempfile.mkdtemp(prefix="deepfim-eval-"))

    def close(self) -> None:
        self.pipeline.executor.shutdown(wait=False)

    def run_repo(self, repo: EvalRepo, tasks: list[FimTask], cfg: EvalConfig) -> list[TaskResult]:
        if not tasks:
            return []
        spec = task_spec(tasks[0], cfg, self.session.profile(Mode.INSTANT))
        source = repository_source(repo.root, sorted({t.path for t in tasks}), self.tok, spec, self._cache_dir)
        try:
            return [self._run(source, repo.root, t, cfg) for t in tasks]
        finally:
            source.close()

    def run_loose(self, tasks: list[FimTask], cfg: EvalConfig) -> list[TaskResult]:
        """Tasks without a workspace (HumanEval): the cursor file alone."""
        source = ContextSource(None)
        results = [self._run(source, None, t, cfg) for t in tasks]
        runnable = [(r, t) for r, t in zip(results, tasks, strict=True) if t.suite == "humaneval"]
        if runnable:
            outcomes = run_programs([program(t, r.prediction) for r, t in runnable])
            for (r, _), outcome in zip(runnable, outcomes, strict=True):
                r.passed = outcome.passed
        return results

    def _run(self, source: ContextSource, root: Path | None, task: FimTask, cfg: EvalConfig) -> TaskResult:
        path = (root / task.path) if root is not None and task.path else Path(task.path or "task.py")
        preset = _preset(task, cfg)
        spec = task_spec(task, cfg, self.session.profile(Mode.INSTANT))
        if root is not None:
            hold_buffer(source, path, task)
        start = time.perf_counter()
        try:
            if cfg.model == "copy":
                built = task_prompt(source, self.tok, path, task, spec)
                language = for_editor(task.lang, path)
                raw = copy_completion(self.tok, built, MAX_NEW_TOKENS[task.kind] * 4)
                ctx = analyse(task.prefix, task.suffix, language, preset.max_lines)
                prediction, tokens, score = shape(raw, ctx).text, len(built.prompt), None
            else:
                inp = CompletionInput(path, task.lang, task.prefix, task.suffix)
                outcome = asyncio.run(self.pipeline.complete(inp, preset, self.session, source, spec=spec))
                prediction = outcome.items[0] if outcome.items else ""
                tokens = outcome.timings.prompt_tokens
                score = outcome.scores[0] if outcome.scores else None
        finally:
            if root is not None:
                source.update_buffer(path, None)
        ms = (time.perf_counter() - start) * 1000
        prediction = finalize(task, prediction)
        return TaskResult(
            cfg.name, cfg.model, task.task_id, task.suite, task.repo or "", task.lang, task.kind, cfg.level.value,
            tokens, prediction, exact_match(prediction, task.middle), edit_similarity(prediction, task.middle),
            score, ms,
        )  # fmt: skip


def aggregate(results: list[TaskResult]) -> list[dict]:
    """Rows per (config, suite, kind), plus an all-kinds row per (config, suite)."""
    groups: dict[tuple, list[TaskResult]] = defaultdict(list)
    for r in results:
        groups[(r.config, r.suite, r.kind)].append(r)
        groups[(r.config, r.suite, "all")].append(r)
    rows = []
    for (config, suite, kind), rs in groups.items():
        if kind == "all" and len({r.kind for r in rs}) < 2:
            continue
        passed = [r.passed for r in rs if r.passed is not None]
        ms = sorted(r.ms for r in rs)
        rows.append({
            "config": config, "suite": suite, "hole": kind, "n": len(rs),
            "exact_match": sum(r.exact for r in rs) / len(rs),
            "edit_similarity": sum(r.edit_sim for r in rs) / len(rs),
            "pass_at_1": sum(passed) / len(passed) if passed else None,
            "median_ms": ms[len(ms) // 2],
            "prompt_tokens": sorted(r.prompt_tokens for r in rs)[len(rs) // 2],
        })  # fmt: skip
    rows.sort(key=lambda r: (r["suite"], r["hole"] == "all", r["hole"], r["config"]))
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = "| suite | hole | config | n | EM | edit sim | pass@1 | median ms | prompt tokens |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p1 = "" if r["pass_at_1"] is None else f"{100 * r['pass_at_1']:.1f}"
        lines.append(
            f"| {r['suite']} | {r['hole']} | {r['config']} | {r['n']} | {100 * r['exact_match']:.1f} | "
            f"{100 * r['edit_similarity']:.1f} | {p1} | {r['median_ms']:.0f} | {r['prompt_tokens']} |"
        )
    return "\n".join(lines)


def results_json(results: list[TaskResult]) -> list[dict]:
    return [asdict(r) for r in results]
