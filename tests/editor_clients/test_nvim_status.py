"""What the Neovim plugin says it is doing: the statusline component driven by the real server's
`$/progress` and by the plugin's own requests, the command-line echo, the per-buffer and global
switches, and `:DeepFIM status` in a floating window — in a real headless Neovim against the real
`deepfim lsp`.

Every state the plugin announces (`User DeepFIMStatus`) is recorded from the moment Neovim starts
(`_G.test_statuses`, see nvim_driver.py), so the cold start is seen even when other tests ran first.
"""

from __future__ import annotations

import re

from nvim_driver import deepfim_binary
from nvim_helpers import (
    FLOAT_TEXT,
    GHOST,
    QUICK_S,
    SHOP,
    SUGGESTION_S,
    assert_no_lua_errors,
    fresh_insert_at_end,
    server_status,
    type_and_wait,
)

STATE = "require('deepfim').status()"
STATUSLINE = "require('deepfim').statusline()"
READY = f"{STATE}.kind == 'ready'"
# Counts inline-completion requests Neovim's LSP client sends (`LspRequest`, a real client event).
COUNT_REQUESTS = """
_G.test_requests = 0
vim.api.nvim_create_autocmd("LspRequest", { callback = function(args)
  local r = args.data.request
  if r.type == "pending" and r.method == "textDocument/inlineCompletion" then
    _G.test_requests = _G.test_requests + 1
  end
end })
"""


def statuses_since(nvim, start: int) -> list[str]:
    return nvim.lua(f"return vim.list_slice(_G.test_statuses, {start + 1})")


def echoed(nvim) -> list[dict]:
    return [m for m in nvim.lua("return _G.test_messages") if m["kind"] == "echo" and m["text"].startswith("DeepFIM:")]


def test_progress_and_expert_requests_are_echoed_outside_messages(make_nvim, tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "shop.py").write_text(SHOP)
    nvim = make_nvim({"cmd": [deepfim_binary(), "lsp"]}, record_messages=True)
    nvim.command("edit shop.py")
    nvim.wait_for(READY, SUGGESTION_S, "the ready state")
    # the index scan starts once the engine is up (lsp_server/scan_pacing.py): its end comes after
    nvim.wait_for(
        "vim.iter(_G.test_messages):any(function(m) return m.text:find(' files indexed$') end)",
        SUGGESTION_S,
        "the end of indexing on the command line",
    )
    texts = [m["text"] for m in echoed(nvim)]
    assert "DeepFIM: loading model (embedded)" in texts, texts
    assert "DeepFIM: loading model: model ready" in texts, texts
    assert any(re.fullmatch(r"DeepFIM: indexing \S+: \d+ files indexed", t) for t in texts), texts
    assert texts.index("DeepFIM: loading model: model ready") < next(
        i for i, t in enumerate(texts) if t.endswith(" files indexed")
    )

    fresh_insert_at_end(nvim)
    nvim.input(" item<M-\\>")
    finished = r"DeepFIM: expert (suggestion|nothing to suggest) \(\d+\.\d s\)"
    nvim.wait_for(
        "vim.iter(_G.test_messages):any(function(m) return m.text:find('^DeepFIM: expert [sn]') end)",
        SUGGESTION_S,
        "the end of the expert request on the command line",
    )
    texts = [m["text"] for m in echoed(nvim)]
    assert "DeepFIM: expert request…" in texts, texts
    assert any(re.fullmatch(finished, t) for t in texts), texts
    # One short line each, never in :messages (so never a "Press ENTER" prompt).
    assert not any(m["history"] for m in echoed(nvim))
    assert "DeepFIM:" not in nvim.messages()


def test_cold_start_shows_loading_and_indexing_then_ready(editor):
    editor.wait_for(READY, SUGGESTION_S, "the ready state")
    seen = statuses_since(editor, 0)
    first_ready = seen.index("ready: DeepFIM ready")
    before_ready = seen[:first_ready]
    assert "starting: DeepFIM starting" in before_ready, seen
    assert "progress: DeepFIM loading model" in before_ready, seen
    assert any(s.startswith("progress: DeepFIM indexing ") for s in seen), seen
    assert editor.lua(f"return {STATUSLINE}") == "DeepFIM ready"
    assert_no_lua_errors(editor)


def test_expert_request_is_shown_while_it_runs(editor):
    editor.wait_for(READY, SUGGESTION_S, "the ready state")
    fresh_insert_at_end(editor)
    start = editor.lua("return #_G.test_statuses")
    editor.input(" item<M-\\>")
    editor.wait_for(
        f"vim.iter(vim.list_slice(_G.test_statuses, {start + 1})):any(function(s) return s:find('^expert: ') end)",
        QUICK_S,
        "the expert state",
    )
    editor.wait_for(READY, SUGGESTION_S, "the expert request to finish")
    seen = statuses_since(editor, start)
    assert any(s.startswith("expert: DeepFIM expert request") for s in seen), seen
    assert seen[-1] == "ready: DeepFIM ready", seen
    editor.input("<Esc>")
    assert_no_lua_errors(editor)


def test_buffer_switch_is_independent_of_the_global_one(editor):
    editor.input("<Esc>")
    editor.wait_for(READY, SUGGESTION_S, "the ready state")
    editor.lua(COUNT_REQUESTS)

    editor.command("DeepFIM toggle buffer")
    assert editor.lua("return vim.b.deepfim_enabled") is False
    assert editor.lua(f"return {STATUSLINE}") == "DeepFIM off (buffer)"
    editor.lua("_G.test_notifications = {}")
    editor.command("DeepFIM toggle")  # global off
    editor.wait_for("vim.tbl_contains(_G.test_notifications, '[DeepFIM] completions off')", QUICK_S, "global off")
    assert editor.lua(f"return {STATUSLINE}") == "DeepFIM off"
    assert server_status(editor)["enabled"] is False
    editor.command("DeepFIM toggle")  # global on: this buffer stays off
    editor.wait_for("vim.tbl_contains(_G.test_notifications, '[DeepFIM] completions on')", QUICK_S, "global on")
    assert editor.lua(f"return {STATUSLINE}") == "DeepFIM off (buffer)"
    assert server_status(editor)["enabled"] is True

    # Typing in the switched-off buffer asks nothing; another buffer of the workspace is on.
    fresh_insert_at_end(editor)
    editor.input(" item")
    editor.lua("vim.wait(300)")  # well past the 20 ms debounce
    assert editor.lua("return _G.test_requests") == 0
    assert editor.lua(f"return {GHOST}") is None
    editor.input("<Esc>")
    editor.command("split orders.py")
    editor.wait_for(READY, QUICK_S, "the other buffer to be ready")
    editor.command("close")

    # Switched back on, the same typing brings a suggestion.
    editor.command("DeepFIM toggle buffer")
    assert editor.lua("return vim.b.deepfim_enabled") is True
    fresh_insert_at_end(editor)
    type_and_wait(editor, " item", SUGGESTION_S)
    assert editor.lua("return _G.test_requests") >= 1
    editor.input("<Esc>")
    assert_no_lua_errors(editor)


def test_status_command_opens_a_float_and_prints_nothing(editor):
    editor.input("<Esc>")
    editor.wait_for(READY, SUGGESTION_S, "the ready state")
    before = editor.messages()
    editor.command("DeepFIM status")
    text = editor.wait_for(FLOAT_TEXT, QUICK_S, "the status float")
    lines = text.split("\n")
    assert lines[0] == "this buffer: ready"
    assert lines[1].startswith("enabled, mode instant, engine in-process")
    assert any(line.startswith("acceptance: ") for line in lines), lines
    # Nothing went to the message area, so there is nothing to "Press ENTER" for.
    assert editor.messages() == before
    assert editor.lua("return vim.api.nvim_get_mode()") == {"mode": "n", "blocking": False}
    # Moving the cursor closes it.
    editor.input("k")
    editor.wait_for(f"{FLOAT_TEXT} == nil", QUICK_S, "the float to close")
    assert_no_lua_errors(editor)


def test_a_model_that_fails_to_load_shows_as_an_error(make_nvim, tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    empty = tmp_path / "not-a-checkpoint"  # a directory without config.json
    empty.mkdir()
    nvim = make_nvim({"cmd": [deepfim_binary(), "lsp"], "settings": {"checkpoint": str(empty)}})
    nvim.command("edit a.py")
    text = nvim.wait_for(
        f"{STATE}.kind == 'error' and {STATUSLINE}", SUGGESTION_S, "the server's error in the statusline"
    )
    assert text.startswith("DeepFIM error: could not start the engine")
    assert "progress: DeepFIM loading model" in nvim.lua("return _G.test_statuses")
