"""`deepfim complete FILE:LINE:COL`: location parsing, the shared pipeline, the command."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsp_double_backend import CopyBackend

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.lsp_server.editor_settings import Settings
from deepfim.lsp_server.oneshot import complete_location, cursor_offset, format_report, parse_location

REPO = Path(__file__).resolve().parents[2]
DEEPFIM = [sys.executable, "-m", "deepfim.cli"]


def test_parse_location():
    loc = parse_location("shop/cart.py:23:1")
    assert (loc.path, loc.line, loc.column) == (Path("shop/cart.py"), 23, 1)
    assert parse_location(r"C:\src\a.py:3:4").path == Path(r"C:\src\a.py")
    for bad, word in [("cart.py:0:1", "'0'"), ("cart.py:2:x", "'x'"), ("cart.py", "FILE:LINE:COL")]:
        with pytest.raises(ValueError, match=word):
            parse_location(bad)


def test_cursor_offset_is_one_based_and_checked():
    text = "ab\r\ncd\n"
    assert cursor_offset(text, 1, 1) == 0
    assert cursor_offset(text, 2, 3) == text.index("cd") + 2  # one past the end of the line
    with pytest.raises(ValueError, match="column 4"):
        cursor_offset(text, 2, 4)
    with pytest.raises(ValueError, match="line 9"):
        cursor_offset(text, 9, 1)


def test_complete_location_runs_the_pipeline_with_context(tmp_path):
    root = tmp_path / "shop"
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns("__pycache__"))
    report = complete_location(
        parse_location(f"{root}/shop/cart.py:23:1"),
        root,
        Settings(),
        "instant",
        factory=lambda spec: CopyBackend(DEFAULT_MODEL_DIR / "tokenizer.json"),
    )
    assert report["completion"].strip()
    assert report["extent"] == "multi"
    assert set(report["timings"]) >= {"context_ms", "prefill_ms", "decode_ms", "post_ms", "total_ms"}
    if importlib.util.find_spec("deepfim.context.workspace") is not None:
        assert report["context"]["source"] == "workspace"
        assert "shop/pricing.py" in report["context"]["files"]
    assert "instant" in format_report(report)


def test_command_reports_bad_input_with_the_value():
    bad = subprocess.run([*DEEPFIM, "complete", "nope.py:1:1"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "nope.py" in bad.stderr and bad.stdout == ""
    bad = subprocess.run(
        [*DEEPFIM, "complete", "examples/shop/shop/cart.py:1:1", "--max-tokens", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "deepfim.maxTokens" in bad.stderr


EMBEDDED_READY = (
    importlib.util.find_spec("deepfim.engine.serving.local_backend") is not None
    and (DEFAULT_MODEL_DIR / "config.json").is_file()
)


@pytest.mark.skipif(not EMBEDDED_READY, reason="the engine or the embedded model's weights are not there yet")
def test_demo_command_with_the_embedded_model():
    out = subprocess.run(
        [*DEEPFIM, "complete", "examples/shop/shop/cart.py:23:1", "--workspace", "examples/shop", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["completion"].strip() and report["timings"]["total_ms"] > 0
