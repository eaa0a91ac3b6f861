"""The Neovim plugin in a real headless Neovim against the real `deepfim lsp` (embedded model).

Keys are typed through msgpack-RPC as a person would type them; the tests wait for the ghost-text
extmark, accept it, dismiss it, switch modes, and check that a server that cannot start produces a
message rather than a Lua error. Skipped only when `deepfim lsp` itself cannot start.
"""

from __future__ import annotations

import time

import pytest
from nvim_driver import deepfim_binary
from nvim_helpers import (
    EXTMARKS,
    FIRST_SUGGESTION_S,
    FLOAT_TEXT,
    GHOST,
    LAST_LINE,
    LINES,
    QUICK_S,
    SUGGESTION_S,
    assert_no_lua_errors,
    fresh_insert_at_end,
    lua_str,
    server_start_problem,
    server_status,
    type_and_wait,
)


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


def test_checkhealth_reports_the_server(editor):
    editor.input("<Esc>")
    editor.command("checkhealth deepfim")
    report = "\n".join(editor.lua(f"return {LINES}"))
    editor.command("bwipeout")
    assert "OK configuration is valid: every key is known" in report
    assert "OK it runs: deepfim" in report
    assert "server 1" in report and "does not answer" not in report
    assert "<Tab> accepts: yes" in report


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
    text = nvim.wait_for(FLOAT_TEXT, QUICK_S, "the status explanation in a float")
    assert "not an executable program" in text
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
    # The statusline says so too.
    assert nvim.lua("return require('deepfim').status().kind") == "error"
    assert nvim.lua("return require('deepfim').statusline()").startswith("DeepFIM error: the language server failed")
    assert_no_lua_errors(nvim)


def test_invalid_configuration_is_named_and_defaults_apply(make_nvim, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    # The bad `cmd` is named and replaced by its default; the valid `filetypes` still applies,
    # so no server starts for this Python file.
    nvim = make_nvim({"cmd": "deepfim lsp", "filetypes": ["lua"]})
    nvim.command("edit a.py")
    message = nvim.wait_for("_G.test_notifications[1]", QUICK_S, "a configuration message")
    assert message.startswith(
        '[DeepFIM] invalid configuration: cmd: expected a non-empty list of strings, got "deepfim lsp"'
    )
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


def test_where_the_cursor_rests_reaches_the_server(editor):
    """Normal-mode moves are reported once the cursor rests (`deepfim/cursor`,
    editor_clients/nvim/lua/deepfim/cursor.lua): a burst of moves is one report."""
    nvim = editor
    nvim.input("<Esc>")
    nvim.wait_for("vim.fn.mode() == 'n'", QUICK_S, "normal mode")
    before = server_status(nvim)["cursor"]["reported"]
    for line in (3, 4, 5, 6, 7):  # faster than the rest delay: only the last place counts
        nvim.lua(f"vim.api.nvim_win_set_cursor(0, {{ {line}, 0 }})")
        nvim.command("doautocmd CursorMoved")
    deadline = time.monotonic() + QUICK_S
    while server_status(nvim)["cursor"]["reported"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a second report would have come by now
    assert server_status(nvim)["cursor"]["reported"] == before + 1
    assert_no_lua_errors(nvim)
