"""What the documents state as facts agrees with the code: the team server's port
(docs/team-server.md, README.md), the README's project structure (every path it names
exists) and the keystroke's path in docs/architecture.md (every stop names a real function).
The settings table of docs/protocol.md is checked in tests/editor_clients/test_client_settings.py."""

from __future__ import annotations

import re
from pathlib import Path

from deepfim.cli import command_parser
from deepfim.engine.server.connect_errors import DEFAULT_PORT

REPO = Path(__file__).resolve().parents[2]


def test_the_team_server_port_is_the_documented_one():
    serve = command_parser("serve")
    assert serve.get_default("port") == DEFAULT_PORT == 7431
    team = (REPO / "docs" / "team-server.md").read_text()
    assert f"`--port` (default {DEFAULT_PORT})" in team
    mentions = re.compile(r"\bport (\d{4,5})\b|\b(?:localhost|127\.0\.0\.1):(\d{4,5})\b")
    for doc in ("README.md", "docs/team-server.md"):
        for port in mentions.findall((REPO / doc).read_text()):
            number = int(next(p for p in port if p))
            assert number == DEFAULT_PORT, f"{doc} names port {number}"


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


def test_every_stop_of_the_keystroke_path_names_real_code():
    """docs/architecture.md names `path:Name` for each stop; the file must define Name."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    stops = re.findall(r"^\d+\. \*\*", doc, re.M)
    assert 1 < len(stops) <= 10, "the keystroke path is told in at most ten stops"
    named = re.findall(r"`([\w/.-]+\.(?:py|lua|ts|c)):([\w.]+)`", doc)
    files = re.findall(r"`([\w/.-]+\.(?:py|lua|ts|c))`", doc)
    assert len(named) >= 15
    for path, name in named:
        text = (REPO / path).read_text()
        leaf = name.split(".")[-1]
        defined = rf"^\s*(async\s+def|def|class)\s+{leaf}\b|^function\s+{re.escape(name)}\b"
        assert re.search(defined, text, re.M), f"docs/architecture.md: {path} does not define {name}"
    for path in files:
        assert (REPO / path).is_file(), f"docs/architecture.md names {path}, which does not exist"
