"""Every environment variable DeepFIM reads, in one place.

Settings belong in typed configuration (CLI flags, LSP initializationOptions); environment
variables only locate things on disk and set log verbosity.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Index and prefix-cache files: $DEEPFIM_CACHE_DIR, else $XDG_CACHE_HOME/deepfim."""
    explicit = os.environ.get("DEEPFIM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "deepfim"


def git_default_excludes_file() -> Path:
    """git's ignore file when ``core.excludesFile`` is unset: $XDG_CONFIG_HOME/git/ignore,
    else ~/.config/git/ignore (gitignore(5))."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "git" / "ignore"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level() -> str:
    """$DEEPFIM_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR, CRITICAL; any case); WARNING by default."""
    value = (os.environ.get("DEEPFIM_LOG_LEVEL") or "WARNING").upper()
    if value not in LOG_LEVELS:
        raise ValueError(f"DEEPFIM_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value


def torch_threads() -> int | None:
    """$DEEPFIM_THREADS caps the CPU threads torch uses; None leaves torch's default."""
    value = os.environ.get("DEEPFIM_THREADS")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"DEEPFIM_THREADS must be a positive integer, got {value!r}")
    return int(value)


def torchrun_ranks() -> tuple[int, int, int] | None:
    """(RANK, WORLD_SIZE, LOCAL_RANK) when started by torchrun (it sets all three), else None."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    values = [os.environ.get(n) for n in names]
    if not all(values):
        return None
    if not all(v.isdigit() for v in values):
        raise ValueError(f"torchrun's {', '.join(names)} must be integers, got {values}")
    rank, world, local = (int(v) for v in values)
    return rank, world, local
