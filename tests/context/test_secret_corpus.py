"""The secret corpus (`secret_corpus.py`) through the real index, `Workspace.pack` and the `deepfim`
CLI: no canary in any packed prompt, any log record (DEBUG) or any byte of any cache file.

Files holding secrets are indexed with the values redacted, so every file must still reach the
prompt (its marker is there): a detector that dropped whole files would fail here too.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
from array import array
from pathlib import Path

import msgpack
import pytest
from ctx_fixtures import prompt_of, write_tree
from secret_corpus import CASES, CURSOR_CASES, build, fill, leaked

from deepfim.context import tokens
from deepfim.context.sealed import unseal
from deepfim.context.secrets import REDACTED
from deepfim.context.settings import ContextSettings
from deepfim.context.workspace import Workspace

BIG = 1_000_000  # tokens: room for every file whole
CLEAN = {"app/main.py": "def run():\n    return 1\n", "src/notify.py": "def send():\n    return None\n"}
# an open editor buffer (not the cursor file) whose unsaved text holds secrets
BUFFER = '# ⟦M⟧\nSLACK_TOKEN = "xoxp-⟦d12⟧-⟦a24⟧"\npassword = "⟦p12⟧"\n\ndef send():\n    return None\n'


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''} {record.args!r}")


def _cache_texts(cache_dir: Path, tok) -> list[tuple[Path, str]]:
    """Every cache file as text (bytes decoded leniently), plus each token cache's ids decoded."""
    found = []
    for path in sorted(p for p in cache_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found.append((path, data.decode("utf-8", "replace")))
        if path.name.startswith("tokens-"):
            for key, blob in msgpack.unpackb(unseal(tokens.MAGIC, data), raw=False)["ids"].items():
                ids = array("I")
                ids.frombytes(blob)
                found.append((path / key, tok.decode(list(ids))))
    return found


def _cursor(prefix: str) -> tuple[int, int]:
    """1-based line and column of the end of `prefix`."""
    return prefix.count("\n") + 1, len(prefix) - (prefix.rfind("\n") + 1) + 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tok):
    """The workspace, written, indexed, tokenized and packed once for every test here."""
    base = tmp_path_factory.mktemp("corpus")
    files, canaries, markers, cursor = build()
    buffer_text = fill(BUFFER, random.Random(7), "buffermarkerq", canaries)
    root = write_tree(base / "repo", {**files, **CLEAN, **{path: p + s for _, path, p, s, _ in cursor}})
    records, root_logger = _Records(), logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(records)
    root_logger.setLevel(logging.DEBUG)
    try:
        ws = Workspace(root, cache_dir=base / "cache", settings=ContextSettings())
        ws.scan()
        ws.prepare_tokens(tok)
        ws.update_buffer(root / "src/notify.py", buffer_text)
        main = (root / "app/main.py").read_text()
        prompts = {"app/main.py": tok.decode(prompt_of(ws, tok, root / "app/main.py", main, "", BIG).prompt.ids)}
        # the open buffer as the cursor file (edited files reach prompts as their copy and evidence)
        built = prompt_of(ws, tok, root / "src/notify.py", buffer_text, "", BIG)
        prompts["src/notify.py"] = tok.decode(built.prompt.ids)
        for _, path, prefix, suffix, _ in cursor:
            ws.update_buffer(root / path, prefix + suffix)  # the cursor file is open, as in an editor
            prompts[path] = tok.decode(prompt_of(ws, tok, root / path, prefix, suffix, 8192).prompt.ids)
        ws.save()
        ws.close()
    finally:
        root_logger.removeHandler(records)
        root_logger.setLevel(old_level)
    return {"root": root, "ws": ws, "canaries": canaries, "markers": markers, "cursor": cursor,
            "prompts": prompts, "logs": records.lines, "cache": base / "cache", "base": base}  # fmt: skip


def test_the_corpus_covers_at_least_50_formats_including_the_ones_that_leaked():
    assert len(CASES) + len(CURSOR_CASES) >= 50
    paths = {path for _, path, _ in CASES}
    for leaked_before in ("deploy/kubeconfig.yaml", ".yarnrc.yml", "docker-compose.yml", "scripts/env.sh",
                          "scripts/call.sh", "Dockerfile", "config/database.yaml", "config/db.ini", "docs/setup.md",
                          "appsettings.json"):  # fmt: skip
        assert leaked_before in paths


def test_every_file_with_a_secret_is_indexed_and_packed_with_the_value_redacted(corpus):
    prompt = corpus["prompts"]["app/main.py"]
    files = set(corpus["ws"].files())
    missing = [path for path, marker in corpus["markers"].items() if path not in files or marker not in prompt]
    assert missing == []
    assert "buffermarkerq" in corpus["prompts"]["src/notify.py"]  # the open buffer's text, not the disk's
    assert prompt.count(REDACTED) >= len(CASES)


def test_no_canary_in_any_prompt(corpus):
    for cursor_path, prompt in corpus["prompts"].items():
        assert leaked(corpus["canaries"], prompt) == [], cursor_path


@pytest.mark.parametrize("case", range(len(CURSOR_CASES)), ids=[c[0] for c in CURSOR_CASES])
def test_secrets_in_the_cursor_file_are_redacted_on_both_sides_of_the_cursor(corpus, case):
    _, path, prefix, suffix, marker = corpus["cursor"][case]
    prompt = corpus["prompts"][path]
    assert marker in prompt and REDACTED in prompt
    assert leaked(corpus["canaries"], prompt) == []


def test_no_canary_in_any_log_record(corpus):
    assert corpus["logs"], "DEBUG logging recorded nothing: the check would be empty"
    assert leaked(corpus["canaries"], "\n".join(corpus["logs"])) == []


def test_no_canary_in_any_cache_file(corpus, tok):
    texts = _cache_texts(corpus["cache"], tok)
    assert any(p.name == "index.msgpack" for p, _ in texts) and any(p.name.startswith("tokens-") for p, _ in texts)
    for path, text in texts:
        assert leaked(corpus["canaries"], text) == [], path


def test_the_cli_prints_and_caches_no_canary(corpus, tokenizer_path, tok):
    root, cache = corpus["root"], corpus["base"] / "cli-cache"
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(cache), "DEEPFIM_LOG_LEVEL": "DEBUG"}
    cli = [sys.executable, "-m", "deepfim.cli"]
    _, path, prefix, _, marker = corpus["cursor"][0]
    line, col = _cursor(prefix)
    runs = [
        [*cli, "index", str(root), "--tokenizer", str(tokenizer_path)],
        [*cli, "context", f"{root}/app/main.py:1:1", "--root", str(root), "--tokenizer", str(tokenizer_path),
         "--repository-budget", str(BIG)],
        [*cli, "context", f"{root}/{path}:{line}:{col}", "--root", str(root), "--tokenizer", str(tokenizer_path)],
    ]  # fmt: skip
    outputs = []
    for args in runs:
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout + done.stderr)
    assert all(m in outputs[1] for m in corpus["markers"].values()) and marker in outputs[2]
    assert "DEBUG deepfim.context.indexer: scanned" in outputs[0]  # DEBUG logging was on
    assert leaked(corpus["canaries"], "\n".join(outputs)) == []
    for cached, text in _cache_texts(cache, tok):
        assert leaked(corpus["canaries"], text) == [], cached
