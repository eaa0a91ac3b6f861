"""The Neovim plugin in a real headless Neovim against the real `deepfim lsp` (embedded model).

Keys are typed through msgpack-RPC as a person would type them; the tests wait for the ghost-text
extmark, accept it, dismiss it, switch modes, and check that a server that cannot start produces a
message rather than a Lua error. Skipped only when `deepfim lsp` itself cannot start.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from nvim_driver import deepfim_binary, start_nvim

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


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def editor(workspace):
    """One Neovim with the plugin and the real server, shared by the happy-path tests."""
    problem = server_start_problem()
    if problem:
        pytest.skip(problem)
    nvim = start_nvim(workspace, {"cmd": [deepfim_binary(), "lsp"]})
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


def test_ghost_text_appears_and_accept_inserts_it(editor):
    before = fresh_insert_at_end(editor)
    ghost = type_and_wait(editor, " item", FIRST_SUGGESTION_S)
    marks = editor.lua(f"return {EXTMARKS}")
    assert len(marks) == 1
    row, _col, details = marks[0][1], marks[0][2], marks[0][3]
    assert row == LAST_LINE - 1
    shown = "".join(chunk[0] for chunk in details.get("virt_text", []))
    assert shown == ghost.split("\n")[0].replace("\t", " " * 8)
    accepted_before = (server_status(editor).get("acceptance") or {}).get("accepted", 0)

    editor.input("<M-l>")
    editor.wait_for(f"{GHOST} == nil", QUICK_S, "ghost text to go after accepting")
    expected = "\n".join(before[:-1] + [before[-1] + " item" + ghost])
    assert "\n".join(editor.lua(f"return {LINES}")) == expected
    assert editor.lua(f"return #{EXTMARKS}") == 0
    # The cursor sits after the inserted text.
    last = expected.split("\n")[-1]
    assert editor.lua("return vim.api.nvim_win_get_cursor(0)") == [len(expected.split("\n")), len(last.encode())]
    acceptance = server_status(editor).get("acceptance") or {}
    assert acceptance.get("accepted", 0) == accepted_before + 1
    assert_no_lua_errors(editor)


def test_accept_word_keeps_the_rest_as_ghost_text(editor):
    before = fresh_insert_at_end(editor)
    ghost = type_and_wait(editor, " item", SUGGESTION_S)
    editor.input("<M-w>")
    rest = editor.wait_for(f"{GHOST} ~= {lua_str(ghost)} and ({GHOST} or '<none>')", QUICK_S, "a partial accept")
    taken = ghost if rest == "<none>" else ghost[: len(ghost) - len(rest)]
    assert taken and (rest == "<none>" or ghost.endswith(rest))
    assert editor.lua(f"return {LINES}")[-1] == before[-1] + " item" + taken.split("\n")[0]
    assert_no_lua_errors(editor)


def test_dismiss_clears_ghost_text_and_keeps_the_buffer(editor):
    before = fresh_insert_at_end(editor)
    type_and_wait(editor, " item", SUGGESTION_S)
    rejected_before = (server_status(editor).get("acceptance") or {}).get("rejected", 0)
    editor.input("<C-]>")
    editor.wait_for(f"{GHOST} == nil and #{EXTMARKS} == 0", QUICK_S, "dismiss")
    assert editor.lua(f"return {LINES}") == before[:-1] + [before[-1] + " item"]
    assert editor.lua("return vim.fn.mode()") == "i"
    acceptance = server_status(editor).get("acceptance") or {}
    assert acceptance.get("rejected", 0) == rejected_before + 1
    assert_no_lua_errors(editor)


def test_typing_clears_a_stale_suggestion(editor):
    fresh_insert_at_end(editor)
    ghost = type_and_wait(editor, " item", SUGGESTION_S)
    # A character that does not continue the suggestion makes it stale at once.
    odd = "#" if not ghost.startswith("#") else "@"
    editor.input(odd)
    editor.wait_for(f"{GHOST} ~= {lua_str(ghost)}", QUICK_S, "the stale ghost text to go")
    assert_no_lua_errors(editor)


def test_mode_switch_reaches_the_server(editor):
    editor.input("<Esc>")
    editor.lua("_G.test_notifications = {}")
    editor.command("DeepFIM mode expert")
    editor.wait_for("vim.tbl_contains(_G.test_notifications, '[DeepFIM] mode expert')", QUICK_S, "mode message")
    assert server_status(editor)["mode"] == "expert"
    editor.command("DeepFIM mode instant")
    editor.wait_for("vim.tbl_contains(_G.test_notifications, '[DeepFIM] mode instant')", QUICK_S, "mode message")
    assert server_status(editor)["mode"] == "instant"
    editor.command("DeepFIM mode turbo")
    message = editor.wait_for("_G.test_notifications[3]", QUICK_S, "an error message for a bad mode")
    assert "turbo" in message and "instant" in message
    assert_no_lua_errors(editor)


def test_status_command_shows_the_server_state(editor):
    editor.input("<Esc>")
    editor.lua("_G.test_notifications = {}")
    editor.command("DeepFIM status")
    text = editor.wait_for("_G.test_notifications[1]", QUICK_S, "the status message")
    assert text.startswith("[DeepFIM] enabled, mode instant")
    assert "acceptance:" in text


def test_checkhealth_reports_the_server(editor):
    editor.input("<Esc>")
    editor.command("checkhealth deepfim")
    report = "\n".join(editor.lua(f"return {LINES}"))
    editor.command("bwipeout")
    assert "OK configuration is valid" in report
    assert "OK it runs: deepfim" in report
    assert "server 1" in report and "does not answer" not in report


def lua_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# --- servers that cannot start: a message, never a Lua error --------------------------------


def test_missing_server_program_gives_a_message(make_nvim, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    nvim = make_nvim({"cmd": [str(tmp_path / "no-such-venv" / "bin" / "deepfim"), "lsp"]})
    nvim.command("edit a.py")
    message = nvim.wait_for("_G.test_notifications[1]", QUICK_S, "a message about the server program")
    assert message.startswith("[DeepFIM] cannot start the language server")
    assert "no-such-venv/bin/deepfim" in message and "not an executable program" in message
    assert nvim.lua("return #vim.lsp.get_clients({ name = 'deepfim' })") == 0
    # Typing still works, and :DeepFIM status explains instead of failing.
    nvim.input("ihello<Esc>")
    nvim.wait_for(f"{LINES}[1] == 'hellox = 1'", QUICK_S, "typed text")
    nvim.command("DeepFIM status")
    nvim.wait_for("#_G.test_notifications >= 2", QUICK_S, "the status explanation")
    assert "not an executable program" in nvim.notifications()[-1]
    assert_no_lua_errors(nvim)


def test_server_that_exits_at_start_gives_a_message(make_nvim, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    # The real program with an argument it rejects: it exits with an error before initializing.
    nvim = make_nvim({"cmd": [deepfim_binary(), "lsp", "--no-such-option"]})
    nvim.command("edit a.py")
    message = nvim.wait_for(
        "vim.iter(_G.test_notifications):find(function(m) return m:find('[DeepFIM]', 1, true) end)",
        QUICK_S * 4,
        "a message about the failed start",
    )
    assert "failed to start (exit code" in message and "checkhealth deepfim" in message
    assert_no_lua_errors(nvim)


def test_invalid_configuration_is_named_and_defaults_apply(make_nvim, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    # The bad `cmd` is named and replaced by its default; the valid `filetypes` still applies,
    # so no server starts for this Python file.
    nvim = make_nvim({"cmd": "deepfim lsp", "filetypes": ["lua"]})
    nvim.command("edit a.py")
    message = nvim.wait_for("_G.test_notifications[1]", QUICK_S, "a configuration message")
    assert message.startswith('[DeepFIM] invalid configuration: cmd: expected table, got "deepfim lsp"')
    assert nvim.lua("return require('deepfim.config').get().cmd") == ["deepfim", "lsp"]
    assert nvim.lua("return #vim.lsp.get_clients({ name = 'deepfim' })") == 0
    assert_no_lua_errors(nvim)


def test_bad_checkpoint_path_is_named_by_the_server(make_nvim, tmp_path):
    problem = server_start_problem()
    if problem:
        pytest.skip(problem)
    (tmp_path / ".git").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    missing = tmp_path / "no-such-checkpoint"
    nvim = make_nvim({"cmd": [deepfim_binary(), "lsp"], "settings": {"checkpoint": str(missing)}})
    nvim.command("edit a.py")
    # The server names the setting in window/showMessage; Neovim puts it in :messages.
    messages = nvim.wait_for(
        "(function() local m = vim.api.nvim_exec2('messages', { output = true }).output;"
        f" return m:find('checkpoint', 1, true) and m:find({lua_str(str(missing))}, 1, true) and m end)()",
        QUICK_S * 4,
        "the server's message about the checkpoint",
    )
    assert "LSP[deepfim]" in messages
    assert_no_lua_errors(nvim)
