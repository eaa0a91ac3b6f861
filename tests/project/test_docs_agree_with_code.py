"""What the documents state as facts agrees with the code: the team server's ports
(docs/team-server.md, README.md) and the README's project structure (every path it names
exists). The settings table of docs/protocol.md is checked in tests/editor_clients/test_client_settings.py."""

from __future__ import annotations

import re
from pathlib import Path

from deepfim.cli import command_parser
from deepfim.engine.server.connect_errors import DEFAULT_PORT

REPO = Path(__file__).resolve().parents[2]


def test_the_team_server_ports_are_the_documented_ones():
    serve = command_parser("serve")
    assert serve.get_default("port") == DEFAULT_PORT == 7431
    team = (REPO / "docs" / "team-server.md").read_text()
    assert f"`--port` (default {DEFAULT_PORT})" in team and "(default port + 1" in team
    mentions = re.compile(r"\bport (\d{4,5})\b|\b(?:localhost|127\.0\.0\.1):(\d{4,5})\b")
    for doc in ("README.md", "docs/team-server.md"):
        for port in mentions.findall((REPO / doc).read_text()):
            number = int(next(p for p in port if p))
            assert number in (DEFAULT_PORT, DEFAULT_PORT + 1), f"{doc} names port {number}"


def _tree_entries() -> list[str]:
    """Paths named at the start of the lines of the README's project-structure block."""
    text = (REPO / "README.md").read_text().split("## Project structure", 1)[1]
    block = text.split("```", 2)[1]
    parents: list[str] = []
    paths = []
    for line in block.splitlines():
        name = line.strip().split(" ", 1)[0].rstrip(",;:")
        indent = len(line) - len(line.lstrip(" "))
        if not name or indent >= 20 or indent % 2 or not (name.endswith("/") or "." in name):
            continue  # a continuation of the previous line's description
        depth = indent // 2
        parents = parents[:depth]
        paths.append("".join(parents) + name)
        if name.endswith("/"):
            parents.append(name)
    return paths


def test_the_readme_structure_names_real_paths():
    entries = _tree_entries()
    assert "engine/model/transformer.py" in entries and "lsp_server/" in entries  # the parse works
    missing = [path for path in entries if not (REPO / path).exists()]
    assert not missing, f"README.md project structure names paths that do not exist: {missing}"
