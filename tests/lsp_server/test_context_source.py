"""Prompt packing through the context adapter: bounded inputs, current-file fallback,
secret files, and the real workspace packer when it is installed."""

import importlib.util
import shutil

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.lsp_server.context_source import ContextSource, PrivateFile, bounded, pack_current_file

EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "shop"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(DEFAULT_MODEL_DIR)


def test_bounded_keeps_small_inputs_and_cuts_huge_ones_at_stable_line_starts():
    assert bounded("abc\n", "def", 100) == ("abc\n", "def")
    prefix = "".join(f"line {i}\n" for i in range(100_000))
    cut, _ = bounded(prefix, "", 1000)
    assert 16_000 <= len(cut) <= 20_000 and prefix.endswith(cut) and cut.startswith("line ")
    # typing a few characters does not move the cut point
    cut_after, _ = bounded(prefix + "xy", "", 1000)
    assert cut_after == cut + "xy"
    _, suffix = bounded("", prefix, 1000)
    assert len(suffix) <= 16_000 and prefix.startswith(suffix) and suffix.endswith("\n")


@pytest.mark.parametrize("order", [FimOrder.PSM, FimOrder.SPM])
def test_current_file_prompt_fits_the_budget_and_keeps_text_near_the_cursor(tok, order):
    prefix = "".join(f"value_{i} = {i}\n" for i in range(3000)) + "total = "
    suffix = "\n" + "".join(f"print(value_{i})\n" for i in range(3000))
    packed = pack_current_file(tok, "big.py", prefix, suffix, 512, order, "repo")
    assert len(packed.prompt) <= 512
    text = tok.decode(packed.prompt.ids)
    assert "value_2999 = 2999\ntotal = " in text and "print(value_0)" in text
    assert "value_0 = 0\n" not in text
    assert packed.prompt.order is order
    last = packed.prompt.segments[-1]
    assert last.kind == ("prefix" if order is FimOrder.SPM else "suffix")  # SPM: typing only appends


def test_secret_files_are_never_packed(tok, tmp_path):
    pytest.importorskip("deepfim.context.secrets")
    with pytest.raises(PrivateFile):
        ContextSource(None).pack(tok, tmp_path / ".env", "API_KEY=", "", 512, FimOrder.PSM)


@pytest.mark.skipif(importlib.util.find_spec("deepfim.context.workspace") is None, reason="context not installed")
def test_workspace_prompt_carries_the_other_files(tok, tmp_path):
    root = tmp_path / "shop"
    shutil.copytree(EXAMPLE, root)
    source = ContextSource(root, cache_dir=tmp_path / "cache")
    assert source.indexed and not source.ready
    stats = source.scan()
    assert source.ready and stats["files"] >= 4
    cart = root / "shop" / "cart.py"
    text = cart.read_text()
    cursor = text.index("    def add")
    packed = source.pack(tok, cart, text[:cursor], text[cursor:], 2048, FimOrder.PSM)
    assert packed.source == "workspace" and "shop/pricing.py" in packed.included
    assert "def apply_discount" in tok.decode(packed.prompt.ids)
    source.close()
