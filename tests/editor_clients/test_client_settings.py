"""One source of truth for the server settings the editor clients pass: the server's `Settings`
defaults and limits. The VS Code extension's `package.json` (defaults, minimums), its README
table and the protocol document must say the same (the Neovim plugin is checked against the
server's `parse_settings` in test_nvim_health.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from deepfim.lsp_server.editor_settings import Settings, parse_settings

REPO = Path(__file__).resolve().parents[2]
VSCODE = REPO / "editor_clients" / "vscode"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


SERVER_DEFAULTS = {camel(f.name): f.default for f in dataclasses.fields(Settings)}


def vscode_properties() -> dict[str, dict]:
    manifest = json.loads((VSCODE / "package.json").read_text())
    properties = manifest["contributes"]["configuration"]["properties"]
    return {name.removeprefix("deepfim."): spec for name, spec in properties.items()}


def markdown_defaults(path: Path, key_pattern: str) -> dict[str, str]:
    """`| \\`key\\` | ... |` table rows → the cell that holds the default, as written."""
    rows = {}
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(key_pattern, cells[0]) if len(cells) >= 3 else None
        if match:
            rows[match.group(1)] = cells
    return rows


def test_vscode_manifest_declares_every_server_setting_with_the_servers_default():
    properties = vscode_properties()
    assert set(properties) == set(SERVER_DEFAULTS) | {"serverCommand"}
    for key, default in SERVER_DEFAULTS.items():
        assert properties[key]["default"] == default, key


@pytest.mark.parametrize("key", [k for k, v in vscode_properties().items() if "minimum" in v])
def test_vscode_minimums_are_the_servers(key):
    minimum = vscode_properties()[key]["minimum"]
    assert parse_settings({key: minimum})[1] == []
    assert parse_settings({key: minimum - 1})[1] != []


def test_vscode_readme_table_shows_the_manifest_defaults():
    rows = markdown_defaults(VSCODE / "README.md", r"`deepfim\.(\w+)`")
    properties = vscode_properties()
    assert set(rows) == set(properties)
    for key, spec in properties.items():
        assert rows[key][1] == f"`{json.dumps(spec['default'], separators=(', ', ': '))}`", key


def test_protocol_document_shows_the_servers_defaults():
    rows = markdown_defaults(REPO / "docs" / "protocol.md", r"`(\w+)`")
    documented = {key: cells[2] for key, cells in rows.items() if key in SERVER_DEFAULTS}
    assert set(documented) == set(SERVER_DEFAULTS)
    for key, default in SERVER_DEFAULTS.items():
        written = documented[key].split(" ")[0]  # "null (embedded model)" → "null"
        assert written == json.dumps(default), key
