"""Realistic code text for benchmarks: CPython standard-library files, deterministic order."""

from __future__ import annotations

import sysconfig
from pathlib import Path


def stdlib_files(limit_bytes: int) -> list[tuple[str, str]]:
    """(relative path, text) of stdlib modules, sorted by path, up to about `limit_bytes`."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out, total = [], 0
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append((path.name, text))
        total += len(text)
        if total >= limit_bytes:
            break
    return out
