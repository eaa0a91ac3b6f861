"""`deepfim COMMAND --help` explains every flag and shows its default."""

from __future__ import annotations

import argparse

import pytest

from deepfim.cli import COMMANDS, command_parser, main

NOT_YET: set[str] = set()  # commands whose flags still lack help text


def _options(command: str) -> list[argparse.Action]:
    return [a for a in command_parser(command)._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - NOT_YET))
def test_every_flag_has_help_and_shows_its_default(command, capsys):
    for action in _options(command):
        assert action.help and action.help.strip(), f"deepfim {command} {action.option_strings or action.dest}"
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    page = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for action in _options(command):
        if action.default not in (None, False, "", []) and action.option_strings:
            shown = str(action.default)
            assert f"default: {shown}" in page or "default:" in (action.help or ""), (command, action.dest)


def test_help_pages_name_the_defaults_that_matter(capsys):
    pages = {}
    for command in ("serve", "lsp", "complete", "generate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        pages[command] = " ".join(capsys.readouterr().out.split())
    assert "HTTPS port (0: any free port) (default: 7431)" in pages["serve"]
    assert "--max-connections N open connections, all clients together (default: 256)" in pages["serve"]
    assert "--log-level LEVEL" in pages["lsp"] and "(default: WARNING;" in pages["lsp"]
    assert "(default: instant)" in pages["complete"]
    assert "--prefix-file FILE" in pages["generate"] and "(default: 64)" in pages["generate"]


def test_log_level_flag_and_a_bad_environment_value(capsys, monkeypatch):
    monkeypatch.setenv("DEEPFIM_LOG_LEVEL", "loud")
    assert main(["index", "--help"]) == 2
    err = capsys.readouterr().err
    assert "DEEPFIM_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'" in err
    monkeypatch.setenv("DEEPFIM_LOG_LEVEL", "info")
    assert command_parser("lsp").parse_args(["--log-level", "debug"]).log_level == "DEBUG"
    assert command_parser("lsp").parse_args([]).log_level == "INFO"
