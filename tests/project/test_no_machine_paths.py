"""No path of one particular machine in the tracked files: the standard library, a pyenv or
a user's dot-directories are found through the interpreter (`sysconfig`, `sys`) or the
environment (`deepfim.env`), never written down."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# a home directory followed by a dot-directory (~/.pyenv, ~/.cache, ~/.local, ...), or a pyenv
MACHINE_PATH = re.compile(r"(?:/root|/home/[^/\s\"'`]+|/Users/[^/\s\"'`]+)/\.[A-Za-z]|\.pyenv/versions/")
# Files that may name such a path, each with the reason (keep this list tiny).
ALLOWED = {
    "engine/training/README.md": "provenance record: where the corpus was read on the machine that built it",
    "tests/project/test_no_machine_paths.py": "the pattern's own examples",
}


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to list the tracked files")
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], check=True, capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name]


def test_no_tracked_file_names_a_machine_specific_path():
    offenders = []
    for name in tracked_files():
        path = REPO / name
        if name in ALLOWED or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (weights, images)
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not offenders, "machine-specific paths (use sysconfig/sys or deepfim.env):\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_is_for():
    caught = ('STDLIB = Path("/root/.pyenv/versions/3.11.7/lib/python3.11")', "/home/ana/.cache", "~/.pyenv/versions/")
    for line in caught:
        assert MACHINE_PATH.search(line), line
    for line in ('"/home/me/deepfim/.venv/bin/deepfim"', "Path.home() / '.cache'", "/usr/lib/python3"):
        assert not MACHINE_PATH.search(line), line
