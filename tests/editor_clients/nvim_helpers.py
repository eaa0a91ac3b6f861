"""What the Neovim plugin tests share: the fixture workspace, key notation, and waits on a real
headless Neovim driven by nvim_driver.py against the real `deepfim lsp`."""

from __future__ import annotations

import subprocess
import time

from nvim_driver import deepfim_binary

# First answer includes loading the embedded model and indexing the fixture workspace.
FIRST_SUGGESTION_S = 240
SUGGESTION_S = 90
QUICK_S = 15

SHOP = '''"""A tiny shop: items, prices and totals."""

from dataclasses import dataclass


@dataclass
class Item:
    name: str
    price: float
    quantity: int


def total_price(items: list[Item]) -> float:
    """Sum of price times quantity over all items."""
    return sum(item.price * item.quantity for item in items)


def average_price(items: list[Item]) -> float:
    """Mean price per unit."""
    units = sum(item.quantity for item in items)
    return total_price(items) / units


def most_expensive(items: list[Item]) -> Item:
    """The item with the highest price."""
    return max(items, key=lambda item:
'''
# Cursor goes to the end of the last line (after "lambda item:").
LAST_LINE = len(SHOP.splitlines())

GHOST = "require('deepfim.completion').current()"
LINES = "vim.api.nvim_buf_get_lines(0, 0, -1, false)"
EXTMARKS = "vim.api.nvim_buf_get_extmarks(0, require('deepfim.completion').ns, 0, -1, { details = true })"
# Text of the floating windows open now (nil when none), their lines joined by newlines.
FLOAT_TEXT = (
    "(function() local t = {} for _, w in ipairs(vim.api.nvim_list_wins()) do"
    " if vim.api.nvim_win_get_config(w).relative ~= '' then"
    " table.insert(t, table.concat(vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(w), 0, -1, false), '\\n'))"
    " end end return #t > 0 and table.concat(t, '\\n') or nil end)()"
)
NO_ERRORS = ("stack traceback", "E5108", "E5113", "Error executing")


def server_start_problem() -> str | None:
    """Why `deepfim lsp` cannot start here, or None (argument parsing imports the server module)."""
    try:
        result = subprocess.run(
            [deepfim_binary(), "lsp", "--help"], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`deepfim lsp --help` could not run: {exc}"
    if result.returncode != 0:
        return f"`deepfim lsp` cannot start yet: {result.stderr.strip().splitlines()[-1:]}"
    return None


def fresh_insert_at_end(nvim) -> list[str]:
    """Reload shop.py, put the cursor at the end of its last line in insert mode; return the lines."""
    nvim.input("<Esc>")
    nvim.wait_for("vim.fn.mode() == 'n'", QUICK_S, "normal mode")
    nvim.command("edit! shop.py")
    lines = nvim.lua(f"return {LINES}")
    nvim.lua(f"vim.api.nvim_win_set_cursor(0, {{ {LAST_LINE}, 0 }})")
    nvim.input("A")
    nvim.wait_for("vim.fn.mode() == 'i'", QUICK_S, "insert mode")
    return lines


def type_and_wait(nvim, text: str, timeout: float) -> str:
    """Type `text` and wait for ghost text; fail early if the server reports an error instead."""
    nvim.input(text)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return nvim.wait_for(GHOST, min(10.0, max(0.1, deadline - time.monotonic())), "ghost text")
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        error = server_status(nvim).get("last_error")
        assert not error, f"the server reports an error instead of completing: {error}"


def server_status(nvim) -> dict:
    nvim.lua(
        "_G.test_status = nil; require('deepfim.lsp').request('deepfim/status', {}, "
        "function(err, result) _G.test_status = err and { error = err.message } or result end, 0)"
    )
    status = nvim.wait_for("_G.test_status", QUICK_S, "deepfim/status")
    assert "error" not in status, status
    return status


def assert_no_lua_errors(nvim) -> None:
    messages = nvim.messages()
    assert not any(marker in messages for marker in NO_ERRORS), messages


def lua_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
