"""The Neovim plugin's keys in a real headless Neovim: opt-in `<Tab>` accept that is a normal Tab
(or the user's own `<Tab>` mapping) when no suggestion is shown, and the key preset without Alt.
The shared `editor` runs the real `deepfim lsp` with `tab_accept = true`."""

from __future__ import annotations

from nvim_helpers import (
    GHOST,
    LINES,
    QUICK_S,
    SUGGESTION_S,
    assert_no_lua_errors,
    fresh_insert_at_end,
    lua_str,
    server_status,
    type_and_wait,
)

LAST = f"{LINES}[#{LINES}]"


def test_tab_accepts_a_shown_suggestion(editor):
    before = fresh_insert_at_end(editor)
    ghost = type_and_wait(editor, " item", SUGGESTION_S)
    accepted_before = (server_status(editor).get("acceptance") or {}).get("accepted", 0)
    editor.input("<Tab>")
    editor.wait_for(f"{GHOST} == nil", QUICK_S, "the ghost text to go after <Tab>")
    expected = before[:-1] + (before[-1] + " item" + ghost).split("\n")
    assert editor.lua(f"return {LINES}") == expected
    assert (server_status(editor).get("acceptance") or {}).get("accepted", 0) == accepted_before + 1
    editor.input("<Esc>")
    assert_no_lua_errors(editor)


def test_tab_without_a_suggestion_is_a_tab_or_the_users_mapping(editor):
    editor.lua("require('deepfim').setup({ auto_trigger = false })")  # nothing is suggested
    try:
        before = fresh_insert_at_end(editor)[-1]
        editor.lua("vim.bo.expandtab = true; vim.bo.softtabstop = 4; vim.bo.shiftwidth = 4")
        editor.input("<Tab>")
        # A plain Tab, as Neovim types it: spaces up to the next multiple of 'softtabstop'.
        width = 4 - len(before) % 4
        editor.wait_for(f"{LAST} == {lua_str(before + ' ' * width)}", QUICK_S, "a Tab of spaces")

        # A global <Tab> mapping made after DeepFIM mapped the buffer (a completion plugin's)
        # runs instead: a Lua expression mapping, then a Vimscript one.
        editor.lua("vim.keymap.set('i', '<Tab>', function() return '[lua-tab]' end, { expr = true })")
        editor.input("<Tab>")
        editor.wait_for(f"vim.endswith({LAST}, '[lua-tab]')", QUICK_S, "the Lua mapping's text")
        editor.command("inoremap <Tab> [vim-tab]")
        editor.input("<Tab>")
        editor.wait_for(f"vim.endswith({LAST}, '[lua-tab][vim-tab]')", QUICK_S, "the Vimscript mapping's text")
        assert editor.lua(f"return {GHOST}") is None
    finally:
        editor.input("<Esc>")
        editor.command("silent! iunmap <Tab>")
        editor.lua("vim.bo.expandtab = false; require('deepfim').setup({ auto_trigger = true })")
    assert_no_lua_errors(editor)


def test_ctrl_preset_maps_keys_without_alt(make_nvim, tmp_path):
    (tmp_path / "notes.txt").write_text("x = 1\n")  # a text file: no ftplugin turns Tab into spaces
    nvim = make_nvim({"cmd": ["no-such-deepfim"], "keymaps": "ctrl", "tab_accept": True})
    nvim.command("edit notes.txt")
    nvim.lua("require('deepfim.keymaps').set(0, require('deepfim.config').get())")
    described = nvim.lua(
        "local out = {} for _, m in ipairs(vim.api.nvim_buf_get_keymap(0, 'i')) do"
        " if vim.startswith(m.desc or '', 'DeepFIM: ') then out[m.lhs] = m.desc end end return out"
    )
    assert described == {
        "<C-L>": "DeepFIM: accept suggestion",
        "<Tab>": "DeepFIM: accept suggestion, else Tab",
        "<C-Right>": "DeepFIM: accept next word",
        "<C-Down>": "DeepFIM: accept next line",
        "<C-N>": "DeepFIM: next candidate",
        "<C-P>": "DeepFIM: previous candidate",
        "<C-]>": "DeepFIM: dismiss suggestion",
        "<C-Space>": "DeepFIM: request an expert suggestion",
    }
    # With no suggestion (and no server) the keys do what they did: <Tab> still types a Tab.
    nvim.input("A<Tab><Esc>")
    nvim.wait_for(f"{LINES}[1] == 'x = 1\\t'", QUICK_S, "a plain Tab")
    assert_no_lua_errors(nvim)
