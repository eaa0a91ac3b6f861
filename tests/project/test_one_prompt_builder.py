"""One prompt builder: the language server, `deepfim context`, the evaluation harness and the
training samples send the model the same token ids for the same cursor.

The model is trained on the prompts `MemoryRepo` builds; it is served the prompts the language
server builds and measured on the ones the harness builds. If any of them drifted (another
budget default, another file order, a copy where the other shows none) the figures would
measure a model on prompts it never sees in an editor. Each case runs the real component: a
language server over stdio with the embedded model, the CLI as a subprocess, the harness's
own functions on a workspace on disk, and `MemoryRepo` on the same files held in memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types

from deepfim.context.memory_repo import MemoryRepo
from deepfim.context.prompt_builder import ContextLevel
from deepfim.context.tokens import TokenStore
from deepfim.context.workspace import Workspace
from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.evaluation.harness import EvalConfig, hold_buffer, repository_source, task_prompt, task_spec
from deepfim.engine.evaluation.tasks import FimTask
from deepfim.engine.model.config import ModelArgs
from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.lsp_server.editor_settings import Settings
from deepfim.lsp_server.modes import preset_for, prompt_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "shop"
CURSOR_FILE = "shop/cart.py"
LINE = 23  # 1-based: the body of `discounted_subtotal`, the README's demo location


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")


@pytest.fixture(scope="module")
def profile() -> ServingProfile:
    return ServingProfile.for_checkpoint(DEFAULT_MODEL_DIR, ModelArgs.from_file(DEFAULT_MODEL_DIR).fim_orders)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("one-builder") / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _split(root: Path) -> tuple[str, str]:
    text = (root / CURSOR_FILE).read_text()
    offset = sum(len(line) + 1 for line in text.split("\n")[: LINE - 1])
    return text[:offset], text[offset:]


def _memory_repo(root: Path) -> MemoryRepo:
    """The workspace's indexed files, as a training corpus source holds them."""
    ws = Workspace(root, cache_dir=root.parent / "memory-cache")
    ws.scan()
    files = [(rel, (root / rel).read_text()) for rel in ws.files()]
    ws.close()
    return MemoryRepo(root.name, files)


def _training_ids(root: Path, tok: Tokenizer, spec, exclude: frozenset[str]) -> list[int]:
    repo = _memory_repo(root)
    store = TokenStore(tok, None)
    prefix, suffix = _split(root)
    with repo.buffer(CURSOR_FILE, prefix + suffix):
        part = repo.repository_part(store, spec.budget.repository, exclude=exclude)
        return repo.prompt(store, spec, CURSOR_FILE, prefix, suffix, part).prompt.ids


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lsp_prompt(shop):
    """`deepfim/prompt` at the demo location from a real server, once its repository part is warm."""
    sys.path.insert(0, str(REPO / "tests" / "lsp_server"))  # the language-server tests' client helpers
    from lsp_support import start_client, stop_client

    client = await start_client([sys.executable, "-m", "deepfim.cli", "lsp"], shop)
    try:
        uri = (shop / CURSOR_FILE).as_uri()
        item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=(shop / CURSOR_FILE).read_text())
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
        deadline = time.monotonic() + 120
        while True:
            status = await client.protocol.send_request_async("deepfim/status", {})
            if any(state.state == "warm" for state in status.repository._asdict().values()):
                break
            assert time.monotonic() < deadline, f"the repository part never became warm: {status}"
            await asyncio.sleep(0.2)
        params = {"textDocument": {"uri": uri}, "position": {"line": LINE - 1, "character": 0}}
        answer = await client.protocol.send_request_async("deepfim/prompt", params)
        yield answer
    finally:
        await stop_client(client)


@pytest.mark.asyncio(loop_scope="module")
async def test_language_server_and_cli_send_the_same_ids(lsp_prompt, shop):
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(shop.parent / "cli-cache")}
    out = subprocess.run(
        [sys.executable, "-m", "deepfim.cli", "context", f"{shop / CURSOR_FILE}:{LINE}:1", "--workspace", str(shop),
         "--json"],
        capture_output=True, text=True, env=env, timeout=300, check=True,
    )  # fmt: skip
    cli = json.loads(out.stdout)
    assert lsp_prompt.source == "workspace"
    assert any(s.kind == "file" and s.path != CURSOR_FILE for s in lsp_prompt.segments)  # the part is there
    assert cli["ids"] == lsp_prompt.ids


@pytest.mark.asyncio(loop_scope="module")
async def test_training_builds_the_language_servers_prompt(lsp_prompt, shop, tok, profile):
    spec = prompt_spec(preset_for("instant", Settings()), profile)
    assert _training_ids(shop, tok, spec, exclude=frozenset()) == lsp_prompt.ids


def test_harness_and_training_agree_on_an_edited_file(shop, tok, profile, tmp_path):
    """The harness marks the hole's file edited: it leaves the part and shows as a copy of the
    buffer with the hole removed; a training sample that excludes the file builds the same."""
    text = (shop / CURSOR_FILE).read_text()
    middle = 'return sum((item.subtotal for item in self.items), Decimal("0"))'
    start = text.index(middle)
    task = FimTask(
        "t0", "repos", "python", "line", text[:start], middle, text[start + len(middle) :], CURSOR_FILE, "shop"
    )
    cfg = EvalConfig("model/repository", level=ContextLevel.REPOSITORY)
    spec = task_spec(task, cfg, profile)
    source = repository_source(shop, [CURSOR_FILE], tok, spec, tmp_path / "cache")
    try:
        hold_buffer(source, shop / CURSOR_FILE, task)
        built = task_prompt(source, tok, shop / CURSOR_FILE, task, spec)
    finally:
        source.close()
    kinds = {s.kind for s in built.prompt.segments}
    assert "cursor_copy" in kinds and not any(s.kind == "file" and s.path == CURSOR_FILE for s in built.prompt.segments)
    assert task.middle not in tok.decode(built.prompt.ids)  # the answer is nowhere in the prompt

    repo = _memory_repo(shop)
    store = TokenStore(tok, None)
    with repo.buffer(CURSOR_FILE, task.prefix + task.suffix):
        part = repo.repository_part(store, spec.budget.repository, exclude=frozenset({CURSOR_FILE}))
        trained = repo.prompt(store, spec, CURSOR_FILE, task.prefix, task.suffix, part).prompt.ids
    assert trained == built.prompt.ids
