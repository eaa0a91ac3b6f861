"""`deepfim eval` (engine/evaluation/cli.py) end to end on a tiny built corpus: the held-out
repositories written out of it, the table and the JSON report (rows agree with the tasks), the
copy baseline and the embedded model on the same prompts, no hole's answer in its prompt, and
bad input refused with exit status 2."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
from eval_corpus import heldout_files

from deepfim.cli import main as deepfim_main
from deepfim.engine.evaluation.holes import repo_holes
from deepfim.engine.evaluation.suites import EvalRepo
from deepfim.engine.training.corpus import write_corpus

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


def _eval(tmp: Path, *args: str) -> tuple[int, str, str, dict | None]:
    out, err = io.StringIO(), io.StringIO()
    report = tmp / f"report{len(list(tmp.glob('report*')))}.json"
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = deepfim_main(["eval", "--corpus", str(tmp / "corpus"), "--data", str(tmp / "data"),
                             "--suites", "heldout", "--json", str(report), *args])  # fmt: skip
    return code, out.getvalue(), err.getvalue(), json.loads(report.read_text()) if report.exists() else None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    write_corpus(tmp / "corpus", heldout_files(), {})
    copy = _eval(tmp, "--per-kind", "1", "--configs", "copy/none,copy/repository",
                 "--suites", "heldout,humaneval", "--humaneval-limit", "2")  # fmt: skip
    model = _eval(tmp, "--per-kind", "1", "--max-repos", "1", "--configs", "model/repository")
    return tmp, copy, model


def _table(stdout: str) -> list[dict]:
    """The main table's rows (the gate's table follows it after a blank line)."""
    lines = [line for line in stdout.split("\n\n", 1)[0].splitlines() if line.startswith("|")]
    assert lines[0].startswith("| suite | hole | config | n | EM |") and lines[1].startswith("|---")
    rows = []
    for line in lines[2:]:
        suite, hole, config, n, em, _, p1 = [c.strip() for c in line.strip("|").split("|")][:7]
        rows.append({"suite": suite, "hole": hole, "config": config, "n": int(n), "em": float(em), "p1": p1})
    return rows


def test_the_held_out_repositories_are_written_and_cut_into_holes(runs):
    tmp, (code, _, err, report), _ = runs
    assert code == 0 and "3 repositories, 11 tasks, 2 configurations" in err
    written = {p.relative_to(tmp / "data" / "heldout").as_posix() for p in (tmp / "data" / "heldout").rglob("*.py")}
    assert written == {f"u-{f.repo}/{f.path}" for f in heldout_files() if f.path.endswith(".py")}
    expected = []
    for name in ("u-pkg", "u-shop", "u-web"):
        files = EvalRepo(name, "heldout", tmp / "data" / "heldout" / name).files()
        expected += [t.task_id for t in repo_holes(files, name, "heldout", 1, 0)]
    for config in ("copy/none", "copy/repository"):
        held = [t["task_id"] for t in report["tasks"] if t["config"] == config and t["suite"] == "heldout"]
        assert sorted(held) == sorted(expected)
    assert report["settings"] == {"seed": 0, "per_kind": 1, "checkpoint": ""}
    assert report["configs"] == ["copy; context none", "copy; context repository"]


def test_the_table_and_the_json_rows_agree_with_the_tasks(runs):
    _, (_, stdout, _, report), _ = runs
    groups = defaultdict(list)
    for t in report["tasks"]:
        groups[(t["config"], t["suite"], t["kind"])].append(t)
        if t["suite"] == "heldout":  # the only suite here with several kinds
            groups[(t["config"], t["suite"], "all")].append(t)
        assert t["level"] == t["config"].split("/")[1] and t["model"] == "copy" and t["score"] is None
        if t["kind"] in ("line", "midline", "single"):
            assert "\n" not in t["prediction"]  # single-line holes keep the answer's first line
        assert (t["passed"] is not None) == (t["suite"] == "humaneval")  # HumanEval programs are run
    # HumanEval needs a file of context: not at the level "none"
    assert len(groups[("copy/repository", "humaneval", "single")]) == 2
    assert ("copy/none", "humaneval", "single") not in groups
    rows = report["rows"]
    assert {(r["config"], r["suite"], r["hole"]) for r in rows} == set(groups)
    for r in rows:
        tasks = groups[(r["config"], r["suite"], r["hole"])]
        assert r["n"] == len(tasks)
        assert r["exact_match"] == pytest.approx(sum(t["exact"] for t in tasks) / len(tasks))
        assert r["edit_similarity"] == pytest.approx(sum(t["edit_sim"] for t in tasks) / len(tasks))
        if r["suite"] == "humaneval":
            assert r["pass_at_1"] == pytest.approx(sum(t["passed"] for t in tasks) / len(tasks))
        else:
            assert r["pass_at_1"] is None
    table = _table(stdout)
    assert [(r["suite"], r["config"], r["hole"], r["n"]) for r in table] == [
        (r["suite"], r["config"], r["hole"], r["n"]) for r in rows
    ]
    assert [r["em"] for r in table] == [round(100 * r["exact_match"], 1) for r in rows]
    assert [r["p1"] for r in table] == ["" if r["pass_at_1"] is None else f"{100 * r['pass_at_1']:.1f}" for r in rows]


def _answers(tmp: Path) -> dict[str, tuple[bool, set[str]]]:
    """task id -> (whether its answer occurs elsewhere in the repository, names found only in it)."""
    out = {}
    for name in ("u-pkg", "u-shop", "u-web"):
        files = EvalRepo(name, "heldout", tmp / "data" / "heldout" / name).files()
        for t in repo_holes(files, name, "heldout", 1, 0):
            rest = [t.prefix + t.suffix] + [text for rel, text in files if rel != t.path]
            names = {n for n in IDENTIFIER.findall(t.middle) if not any(n in r for r in rest)}
            out[t.task_id] = (any(t.middle.strip() in r for r in rest), names)
    return out


def test_repository_context_reaches_the_copy_baseline_but_no_hole_answers_itself(runs):
    tmp, (_, _, _, report), _ = runs
    answers = _answers(tmp)
    by = {(t["config"], t["task_id"]): t for t in report["tasks"]}
    # pkg's two files mirror each other: at the repository level each hole's answer is in the other
    pkg = [i for i in answers if i.startswith("u-pkg/")]
    assert pkg and all(answers[i][0] and by[("copy/repository", i)]["exact"] for i in pkg)
    assert sum(by[("copy/none", i)]["exact"] for i in pkg) < len(pkg)
    assert all(by[("copy/repository", i)]["prompt_tokens"] > by[("copy/none", i)]["prompt_tokens"] for i in pkg)
    # the copy baseline copies only what its prompt holds: an answer that is nowhere else in the
    # repository, copied (or a name found only in it), was in the prompt
    unique = [i for i, (elsewhere, _) in answers.items() if not elsewhere]
    assert len(unique) >= 5 and sum(bool(answers[i][1]) for i in unique) >= 3
    for config in ("copy/none", "copy/repository"):
        for i in unique:
            prediction = by[(config, i)]["prediction"]
            assert not by[(config, i)]["exact"] and not answers[i][1] & set(IDENTIFIER.findall(prediction)), i


def test_the_model_runs_on_the_prompts_the_copy_baseline_reads(runs):
    _, (_, _, _, copy), (code, stdout, err, report) = runs
    assert code == 0 and "1 repositories, 3 tasks, 1 configurations" in err
    assert {(r["config"], r["hole"], r["n"]) for r in _table(stdout)} == {
        ("model/repository", hole, n) for hole, n in (("line", 1), ("midline", 1), ("block", 1), ("all", 3))
    }
    copy_tokens = {t["task_id"]: t["prompt_tokens"] for t in copy["tasks"] if t["config"] == "copy/repository"}
    tasks = report["tasks"]
    assert sorted(t["kind"] for t in tasks) == ["block", "line", "midline"]
    for t in tasks:
        assert t["repo"] == "u-pkg" and t["model"] == "model" and t["level"] == "repository"
        assert t["prompt_tokens"] == copy_tokens[t["task_id"]]  # the same prompt
        assert isinstance(t["prediction"], str) and t["ms"] > 0
        assert isinstance(t["score"], float) and t["score"] <= 0.0  # a mean log-probability
        if t["kind"] != "block":
            assert "\n" not in t["prediction"]
        else:
            assert t["prediction"].count("\n") < 12


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--suites", "heldout,nonsense"], "nonsense"),
        (["--suites", ","], "--suites"),
        (["--configs", "copy/none,model/huge"], "model/huge"),
        (["--langs", "cobol"], "cobol"),
        (["--per-kind", "0"], "--per-kind"),
        (["--max-repos", "0"], "--max-repos"),
    ],
)
def test_bad_input_exits_with_status_2_and_names_the_value(tmp_path, args, named):
    code, stdout, err, report = _eval(tmp_path, "--configs", "copy/none", *args)
    assert code == 2 and named in err and err.startswith("deepfim eval: ")
    assert stdout == "" and report is None and not (tmp_path / "data").exists()
