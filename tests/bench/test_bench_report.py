"""`deepfim bench --quick` runs every suite and writes a report whose every figure names its
method; the structure is checked here, never the numbers (those belong to the report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from deepfim.bench.suites import SUITES
from deepfim.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report"
    env = {**os.environ, "DEEPFIM_THREADS": "1"}  # one engine thread: no OpenMP waits on a busy core
    done = subprocess.run(
        [sys.executable, "-m", "deepfim.cli", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


@pytest.mark.slow
def test_every_suite_ran_or_says_why_not(quick_report):
    _, results, _ = quick_report
    assert list(results["suites"]) == list(SUITES)
    for name, suite in results["suites"].items():
        assert suite["status"] in ("ok", "skipped"), (name, suite["reason"], suite["notes"])
        if suite["status"] == "skipped":
            assert suite["reason"] and not suite["figures"], name
        else:
            assert suite["figures"], f"{name} ran but reports no figure"
    gpu = results["suites"]["gpu"]
    if not torch.cuda.is_available():
        assert gpu["status"] == "skipped" and gpu["reason"] == "no CUDA" and not gpu["tables"]


@pytest.mark.slow
def test_every_figure_names_its_method(quick_report):
    _, results, report = quick_report
    keys = set()
    for name, suite in results["suites"].items():
        for f in suite["figures"]:
            m = f["method"]
            assert isinstance(m["runs"], int) and m["runs"] >= 1, (name, f)
            assert m["statistic"] and len(m["how"]) > 10, (name, f)
            assert isinstance(m["spread"], dict), (name, f)
            assert f["value"] is None or isinstance(f["value"], int | float), (name, f)
            assert f["label"] in report, f"{f['label']!r} missing from report.md"
            assert (name, f["key"]) not in keys, f"figure key {f['key']} twice in {name}"
            keys.add((name, f["key"]))
        for t in suite["tables"]:
            assert t["method"] and all(len(row) == len(t["columns"]) for row in t["rows"]), (name, t["title"])


@pytest.mark.slow
def test_report_records_machine_versions_seed_and_plots(quick_report):
    out, results, report = quick_report
    machine, versions = results["machine"], results["versions"]
    assert machine["cpu"] and machine["memory"].endswith("GiB") and "/" in machine["cores (visible / usable)"]
    assert "git" in versions["deepfim"] and versions["torch"] == torch.__version__ and versions["python"]
    assert results["settings"]["seed"] == 0 and results["settings"]["quick"] is True
    for name in SUITES:
        assert f"## {name}" in report
    plots = [p for s in results["suites"].values() for p in s["plots"]]
    assert {"latency_cdf.png", "scaling_time.png", "scaling_memory.png", "state_bytes.png"} <= set(plots)
    for p in plots:
        assert (out / p).read_bytes()[:8] == PNG and f"]({p})" in report
    latency = {f["key"]: f for f in results["suites"]["latency"]["figures"]}
    assert latency["new_file.warm_workspace.p50"]["target"].startswith("<= 150 ms")
    assert "editor_start_to_first_suggestion.p50" in latency
    state = results["suites"]["state"]
    assert state["figures"][0]["key"] == "layout_check" and state["figures"][0]["value"] == 4


def test_unknown_suite_is_named(capsys):
    assert main(["bench", "latncy"]) == 2
    assert "latncy" in capsys.readouterr().err
