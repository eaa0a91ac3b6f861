"""`deepfim index` and `deepfim context`, run in-process through the real CLI dispatcher."""

from __future__ import annotations

import json

import pytest
from ctx_fixtures import POLYGLOT, write_tree

from deepfim.cli import main


@pytest.fixture
def repo(tmp_path, monkeypatch, cache_dir):
    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(cache_dir))
    root = write_tree(tmp_path / "repo", POLYGLOT)
    (root / ".git").mkdir()
    return root


def test_index_reports_languages_definitions_bytes_tokens_and_time(repo, tokenizer_path, capsys):
    assert main(["index", str(repo), "--json", "--tokenizer", str(tokenizer_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 28 and report["files_by_language"]["python"] == 4
    assert set(report["files_by_language"]) >= {"python", "go", "rust", "java", "c", "cpp", "csharp", "ruby", "lua"}
    assert report["definitions"] > 50 and report["bytes"] == sum(len(v.encode()) for v in POLYGLOT.values())
    assert report["tokens"] > 1000 and report["imports"] >= 16 and report["ready"] is True
    assert report["index_seconds"] >= 0 and report["tokens_seconds"] >= 0

    assert main(["index", str(repo), "--tokenizer", str(tokenizer_path)]) == 0  # warm, human-readable
    out = capsys.readouterr().out
    assert "python" in out and "total" in out and "tokens:" in out and "28 cached" in out


def test_index_without_tokens_needs_no_tokenizer(repo, capsys, tmp_path):
    assert main(["index", str(repo), "--json", "--no-tokens", "--checkpoint", str(tmp_path / "none")]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] is None


def test_context_prints_segments_reasons_and_the_exact_prompt(repo, tokenizer_path, capsys):
    args = ["context", f"{repo}/py/app/service.py:7:5", "--tokenizer", str(tokenizer_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "repository file" in out and "py/app/models.py" in out
    assert "definitions of names near the cursor" in out and "def make_user(name: str) -> User" in out
    assert "<｜fim▁begin｜>" in out and "<｜fim▁hole｜>" in out and "cursor_file" in out
    # SPM: the suffix starts exactly at line 7, column 5, and the prompt ends with the prefix there
    assert "<｜fim▁hole｜>return user\n<｜fim▁end｜>" in out and "make_user(util.slugify(name))\n    " in out


def test_context_json_round_trips_the_prompt(repo, tokenizer_path, tok, capsys):
    args = ["context", f"{repo}/web/src/geo.ts:3:1", "--json", "--tokenizer", str(tokenizer_path)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["order"] == "spm" and report["tokens"] == len(report["ids"])
    assert [s["kind"] for s in report["segments"]][-1] == "prefix"
    assert "web/src/types.ts" in {f["path"] for f in report["repository_files"]}
    text = "".join(s["text"] for s in report["segments"])
    assert "export interface Point" in text and text == tok.decode(report["ids"])
    assert main([*args, "--level", "none"]) == 0
    bare = json.loads(capsys.readouterr().out)
    assert bare["repository_files"] == [] and bare["evidence"] == [] and bare["tokens"] < report["tokens"]


@pytest.mark.parametrize(
    "location, message",
    [
        ("nofile.py:1:1", "is not a file"),
        ("py/app/util.py:99:1", "line 99 is past the end"),
        ("py/app/util.py:1:200", "column 200 is past the end"),
        ("py/app/util.py:x:1", "must be positive integers"),
        ("py/app/util.py", "is not FILE:LINE:COL"),
    ],
)
def test_context_names_bad_locations(repo, tokenizer_path, capsys, monkeypatch, location, message):
    monkeypatch.chdir(repo)
    assert main(["context", location, "--tokenizer", str(tokenizer_path)]) == 2
    assert message in capsys.readouterr().err


def test_missing_tokenizer_and_bad_budgets_are_clear_errors(repo, tokenizer_path, tmp_path, capsys):
    assert main(["context", f"{repo}/py/app/util.py:1:1", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "no tokenizer" in capsys.readouterr().err
    args = ["context", f"{repo}/py/app/util.py:1:1", "--repository-budget", "-5", "--tokenizer", str(tokenizer_path)]
    assert main(args) == 2
    assert "repository must be a non-negative integer, got -5" in capsys.readouterr().err


def test_default_tokenizer_is_the_embedded_models(monkeypatch, tmp_path):
    from deepfim.context import cli

    monkeypatch.setattr("deepfim.engine.DEFAULT_MODEL_DIR", tmp_path / "no-model")
    with pytest.raises(cli.CliError, match="pass --tokenizer FILE or --checkpoint DIR"):
        cli.load_tokenizer(None, None)
