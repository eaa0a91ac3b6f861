"""HumanEval infilling (engine/evaluation/humaneval.py): tasks rebuild the canonical program, and
programs run in sandboxed subprocesses that are killed, with what they fork, at the timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deepfim.engine.evaluation.humaneval import load_problems, program, run_program, run_programs, single_line_tasks


def test_humaneval_tasks_rebuild_the_canonical_program():
    problems = load_problems()
    assert len(problems) == 164
    tasks = single_line_tasks(problems[:5], seed=0)
    for p, t in zip(problems[:5], tasks, strict=True):
        assert t.prefix + t.middle + t.suffix == p["prompt"] + p["canonical_solution"]
        assert t.middle.strip() and "\n" not in t.middle


def test_humaneval_correct_passes_wrong_fails_in_a_subprocess():
    tasks = single_line_tasks(load_problems()[:1], all_lines=True)  # HumanEval/0, has_close_elements
    task = next(t for t in tasks if t.middle == "    return False")
    right, wrong = run_programs([program(task, task.middle), program(task, "    return True")])
    assert right.passed and right.returncode == 0
    assert not wrong.passed and not wrong.timed_out


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a killed orphan may wait to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


# forks, then both processes record their pid and spin
FORKING_LOOP = """import os
os.fork()
with open({pids!r}, "a") as f:
    f.write(f"{{os.getpid()}}\\n")
while True:
    pass
"""


@pytest.mark.timeout(60)  # a sandbox that waits on the forked child's pipe hangs: fail in a minute, not ten
def test_infinite_loop_times_out_and_is_killed(tmp_path):
    pids = tmp_path / "pids"
    result = run_program(FORKING_LOOP.format(pids=str(pids)), timeout=1.0)  # how long: bench/bench_timeouts.py
    assert result.timed_out and not result.passed
    written = [int(line) for line in pids.read_text().split()]
    assert len(written) == 2
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in written) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in written), "the forked child outlived the timeout"
