"""The language server's context adapter: prompts for loose files and for an indexed
workspace (through the real Workspace), the served repository part, and secret files."""

import shutil
from pathlib import Path

import pytest

from deepfim.context.prompt_builder import Layout, PromptSpec
from deepfim.context.settings import PromptBudget
from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.lsp_server.context_source import ContextSource, PrivateFile

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop"
SPEC = PromptSpec(Layout.WINDOW, FimOrder.SPM, PromptBudget(repository=4096, cursor_file=512))


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(DEFAULT_MODEL_DIR)


def test_a_loose_file_gets_its_window_copy_and_in_file_evidence(tok):
    prefix = "class Meter:\n    def __init__(self):\n        self.reading = 0\n\n    def bump(self):\n        self."
    later = "".join(f"\n    def step_{i}(self):\n        return {i}\n" for i in range(60))  # past the window
    packed = ContextSource(None).pack(tok, Path("/tmp/meter.py"), prefix, "\n" + later, SPEC)
    kinds = [s.kind for s in packed.prompt.segments]
    assert packed.source == "file" and "file" not in kinds and "cursor_copy" in kinds
    assert kinds[-1] == "prefix" and {"bump", "reading", "step_59"} <= set(packed.built.hints.members)
    assert "def step_20" in tok.decode(packed.prompt.ids)  # only the copy reaches that far
    small = ContextSource(None).pack(tok, Path("/tmp/meter.py"), prefix, "\n", SPEC)
    assert "cursor_copy" not in [s.kind for s in small.prompt.segments]  # the window shows it all


def test_huge_buffers_are_cut_to_the_window(tok):
    prefix = "".join(f"value_{i} = {i}\n" for i in range(30_000)) + "total = "
    suffix = "\n" + "".join(f"print(value_{i})\n" for i in range(30_000))
    packed = ContextSource(None).pack(tok, Path("big.py"), prefix, suffix, SPEC)
    assert len(packed.prompt) <= SPEC.budget.window + SPEC.budget.cursor_file + 64
    assert tok.decode(packed.built.window.near_ids).endswith("total = ")


def test_secret_files_are_never_packed(tok, tmp_path):
    with pytest.raises(PrivateFile):
        ContextSource(None).pack(tok, tmp_path / ".env", "API_KEY=", "", SPEC)


def test_workspace_prompt_carries_the_repository_and_the_served_part(tok, tmp_path):
    root = tmp_path / "shop"
    shutil.copytree(EXAMPLE, root)
    source = ContextSource(root, cache_dir=tmp_path / "cache")
    assert source.indexed and not source.ready and source.repository_part(tok, 4096) is None
    stats = source.scan()
    assert source.ready and stats["files"] >= 4
    cart = root / "shop" / "cart.py"
    text = cart.read_text()
    cursor = text.index("    def add")
    packed = source.pack(tok, cart, text[:cursor], text[cursor:], SPEC)
    assert packed.source == "workspace" and "shop/pricing.py" in packed.included
    assert "def apply_discount" in tok.decode(packed.prompt.ids)
    served = source.repository_part(tok, 1024)
    source.served = served  # the language server serves the part the engine prefilled
    again = source.pack(tok, cart, text[:cursor], text[cursor:], SPEC)
    header = again.prompt.segments[0]
    assert again.built.repository is served
    assert list(again.prompt.ids[header.end : header.end + len(served)]) == list(served.ids)
    source.close()
