"""`deepfim eval` (engine/evaluation/cli.py): the table, the JSON report, and bad input."""

from __future__ import annotations

import json

from eval_corpus import heldout_files

from deepfim.cli import main as deepfim_main
from deepfim.engine.training.corpus import write_corpus


def test_eval_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, heldout_files(), {})
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
