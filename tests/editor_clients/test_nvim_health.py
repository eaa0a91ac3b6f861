"""`:checkhealth deepfim` and the configuration checks behind it, in a real headless Neovim.

Every key's type and range is checked, unknown keys are named with the nearest known one, and the
server settings the plugin accepts are exactly those the real server accepts (its own
`parse_settings` is the oracle), so the two cannot drift apart.
"""

from __future__ import annotations

import json

from nvim_helpers import LINES

from deepfim.lsp_server.editor_settings import parse_settings

PROBLEMS = "require('deepfim.config').problems()"


def checkhealth(nvim) -> str:
    nvim.command("checkhealth deepfim")
    report = "\n".join(nvim.lua(f"return {LINES}"))
    nvim.command("bwipeout")
    return report


def test_checkhealth_names_bad_values_and_unknown_keys(make_nvim):
    nvim = make_nvim(
        {
            "cmd": ["no-such-deepfim", "lsp"],
            "debounce_ms": -5,
            "debounce": 30,
            "server": {"maxTokens": "lots"},
            "keymaps": {"acept": "<C-l>"},
            "settings": {"maxTokens": "lots", "contextBudjet": 2048},
        }
    )
    report = checkhealth(nvim)
    assert "ERROR invalid setting debounce_ms: expected an integer in [0, 2000], got -5" in report
    assert 'ERROR invalid setting settings.maxTokens: expected an integer in [1, 2048], got "lots"' in report
    assert "WARNING debounce: unknown key, ignored (did you mean debounce_ms?)" in report
    assert "WARNING server: unknown key, ignored: server settings go in settings = { server = ... }" in report
    assert "WARNING keymaps.acept: unknown key, ignored (did you mean accept?)" in report
    assert "WARNING settings.contextBudjet: unknown server setting, passed on as is (did you mean contextBudget?)" in (
        report
    )
    assert "configuration is valid" not in report
    # The defaults apply meanwhile.
    assert nvim.lua("return require('deepfim.config').get().debounce_ms") == 20


# key → values the plugin must refuse, each named in one message.
INVALID = {
    "enabled": ["yes", 1],
    "cmd": [[], [1], "deepfim lsp", [""]],
    "root_markers": ["x", [1]],
    "filetypes": [[True], "python"],
    "disabled_filetypes": [3],
    "auto_trigger": [1],
    "debounce_ms": [2.5, -1, 2001, "20"],
    "tab_accept": ["y"],
    "echo_progress": [0],
    "keymaps": ["emacs", 3, {"accept": 3}, {"next": ""}],
    "settings": [3, "mode=expert"],
}


def test_every_client_setting_is_checked(make_nvim):
    nvim = make_nvim({"cmd": ["no-such-deepfim", "lsp"]})
    assert set(nvim.lua("return vim.tbl_keys(require('deepfim.schema').client)")) == set(INVALID)
    for key, values in INVALID.items():
        for value in values:
            nvim.lua("vim.g.deepfim = ...", {key: value})
            errors = nvim.lua(f"return {PROBLEMS}.errors")
            assert len(errors) == 1 and errors[0].startswith(key), (key, value, errors)
            assert "expected" in errors[0] and "got" in errors[0]
    good = {
        "enabled": True,
        "cmd": ["deepfim", "lsp"],
        "root_markers": [".git"],
        "filetypes": ["python"],
        "disabled_filetypes": [],
        "auto_trigger": False,
        "debounce_ms": 0,
        "tab_accept": True,
        "echo_progress": False,
        "keymaps": {"accept": "<C-l>", "dismiss": False},
        "settings": {"mode": "expert", "maxTokens": 64},
    }
    nvim.lua("vim.g.deepfim = ...", good)
    assert nvim.lua(f"return {PROBLEMS}") == {"errors": [], "unknown": []}


def server_probes(tmp_path) -> dict[str, list]:
    folder, file = tmp_path / "ckpt", tmp_path / "ca.pem"
    folder.mkdir()
    file.write_text("x")
    paths = [str(folder), "", 3, True, None]
    return {
        "enabled": [True, False, "yes", 1, None],
        "mode": ["instant", "expert", "turbo", "", 1],
        "checkpoint": paths,
        "device": ["cpu", "cuda", "cuda:3", "gpu", "cuda:", "CUDA", 0, None],
        "expertCheckpoint": paths,
        "tlsCa": [str(file), "", 3, None],
        "server": ["gpu-box.lan:7431", "[::1]:80", "h:0", "h:65536", "nohost", ":80", "", 7431, None],
        "token": ["tok", "", 5, None],
        "logFile": [str(tmp_path / "log"), "", [], None],
        "logLevel": ["debug", "WARNING", "loud", "", 3, None],
        "contextBudget": [256, 4096, 1 << 20, 255, (1 << 20) + 1, 12.5, "4096", True],
        "repositoryBudget": [0, 16384, 1 << 20, -1, (1 << 20) + 1, 2.5, "many", None],
        "confidenceGate": [-0.5, -20, 0, -1, False, True, 0.5, -20.5, "high", None],
        "maxTokens": [1, 2048, 0, 2049, "lots", False],
        "debounceMs": [0, 8, 2000, -1, 2001, "8"],
        "showByMs": [0, 150, 10000, -1, 10001, 1.5, "soon"],
    }


def test_server_settings_match_the_server(make_nvim, tmp_path):
    nvim = make_nvim({"cmd": ["no-such-deepfim", "lsp"]})
    probes = server_probes(tmp_path)
    lua_keys = set(nvim.lua("return vim.tbl_keys(require('deepfim.schema').server)"))
    assert lua_keys == set(probes), "the plugin's server settings are the server's settings"
    for key, values in probes.items():
        for value in values:
            _settings, problems = parse_settings({key: value})
            # JSON null (vim.NIL in Lua) means "unset" for optional keys on both sides.
            set_setting = "vim.g.deepfim = { settings = { [...] = vim.json.decode(select(2, ...)) } }"
            nvim.lua(set_setting, key, json.dumps(value))
            errors = nvim.lua(f"return {PROBLEMS}.errors")
            assert bool(errors) == bool(problems), (key, value, errors, problems)
