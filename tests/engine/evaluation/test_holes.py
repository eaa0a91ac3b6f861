"""Hole extraction at tree-sitter node boundaries, HumanEval in subprocesses, and `deepfim eval`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from deepfim.cli import main as deepfim_main
from deepfim.context.languages import parser
from deepfim.engine.evaluation.holes import extract_holes
from deepfim.engine.evaluation.humaneval import load_problems, program, run_program, run_programs, single_line_tasks
from deepfim.engine.training.corpus import CorpusFile, write_corpus

PY = '''"""A module docstring that mentions value = compute(x) but is a string."""


def compute(x):
    # a comment with total = x + 1 inside
    total = x + 1
    if total > 10:
        total = 10
        print("clamped", total)
    return total


class Box:
    def __init__(self, size):
        self.size = size
        self.items = []

    def add(self, item):
        if len(self.items) >= self.size:
            raise ValueError("full")
        self.items.append(item)
'''

TS = """export function clamp(v: number, lo: number, hi: number): number {
  if (v < lo) {
    return lo;
  }
  const top = Math.min(v, hi);
  return top;
}

export class Stack<T> {
  private items: T[] = [];
  push(item: T): void {
    this.items.push(item);
    console.log("pushed", item);
  }
}
"""


def _files() -> list[CorpusFile]:
    return [
        CorpusFile("pkg/mod.py", "r", "pkg", "u:pkg", "python", "s", PY, "heldout"),
        CorpusFile("pkg/other.py", "r", "pkg", "u:pkg", "python", "s", "from mod import compute\n" + PY, "heldout"),
        CorpusFile("web/clamp.ts", "w", "web", "u:web", "typescript", "s", TS, "heldout"),
    ]


def _node_starts(text: str, lang: str) -> set[int]:
    src = text.encode()
    starts, stack = set(), [parser(lang).parse(src).root_node]
    while stack:
        n = stack.pop()
        if n.is_named:
            starts.add(len(src[: n.start_byte].decode()))
        stack.extend(n.children)
    return starts


def test_single_line_holes_start_at_a_node_and_run_to_the_line_end():
    for lang in ("python", "typescript"):
        tasks = [t for t in extract_holes(_files(), lang, 6, 0, seed=1) if t.kind == "single"]
        assert tasks
        for t in tasks:
            text = t.prefix + t.middle + t.suffix
            assert len(t.prefix) in _node_starts(text, lang)
            assert "\n" not in t.middle and (t.suffix == "" or t.suffix.startswith("\n"))
            assert "docstring" not in t.middle and "comment" not in t.middle  # never inside strings/comments


def test_multi_line_holes_are_whole_block_bodies():
    py = [t for t in extract_holes(_files(), "python", 0, 3, seed=0) if t.kind == "multi"]
    ts = [t for t in extract_holes(_files(), "typescript", 0, 3, seed=0) if t.kind == "multi"]
    assert py and ts
    for t in py:
        assert t.prefix.rstrip().endswith(":") and t.prefix.endswith("\n") and t.middle.endswith("\n")
        assert 2 <= t.middle.count("\n") <= 12
    for t in ts:
        assert t.prefix.rstrip().endswith("{") and t.suffix.lstrip().startswith("}")
    bodies = {t.middle for t in py}
    assert bodies <= {
        '        total = 10\n        print("clamped", total)\n',
        "        self.size = size\n        self.items = []\n",
        '        if len(self.items) >= self.size:\n            raise ValueError("full")\n'
        "        self.items.append(item)\n",
        PY.split("class Box:\n")[1],
        PY.split("def compute(x):\n")[1].split("\n\n\nclass")[0] + "\n",
    }


def test_holes_are_deterministic_and_carry_package_context():
    a = extract_holes(_files(), "python", 4, 2, seed=3)
    b = extract_holes(_files(), "python", 4, 2, seed=3)
    assert [(t.task_id, t.middle) for t in a] == [(t.task_id, t.middle) for t in b]
    for t in a:
        assert [p for p, _ in t.context_files] == (["pkg/other.py"] if t.path == "pkg/mod.py" else ["pkg/mod.py"])


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


def test_eval_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, _files(), {})
    out = tmp_path / "eval.json"
    code = deepfim_main(
        ["eval", "--corpus", str(corpus), "--models", "copy", "--limit", "3", "--langs", "python,typescript",
         "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "| heldout | python | single | copy | with |" in table and "| humaneval |" in table
    payload = json.loads(out.read_text())
    rows = {(r["suite"], r["lang"], r["hole"], r["context"]) for r in payload["rows"]}
    assert ("heldout", "python", "single", True) in rows and ("heldout", "python", "single", False) in rows
    he = [t for t in payload["tasks"] if t["suite"] == "humaneval"]
    assert len(he) == 3 and all(t["passed"] is not None for t in he)


def test_eval_cli_rejects_bad_input_with_exit_status_2(tmp_path):
    assert deepfim_main(["eval", "--models", "copy", "--langs", "cobol"]) == 2
    assert deepfim_main(["eval", "--models", "copy", "--corpus", str(tmp_path / "absent")]) == 2
