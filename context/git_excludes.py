"""Where git keeps the ignore rules that are not ``.gitignore`` files, for a workspace root.

git ignores, besides the ``.gitignore`` files of the tree, the patterns of
``$GIT_DIR/info/exclude`` and of the file named by ``core.excludesFile`` (default
``$XDG_CONFIG_HOME/git/ignore``, i.e. ``~/.config/git/ignore``), and a workspace opened
below the repository's top level inherits the ``.gitignore`` files above it. git itself
answers where these are (``git rev-parse``, ``git config --path``), so worktrees,
``include.path`` and ``GIT_CONFIG_GLOBAL`` come out as git sees them. Without a ``git``
program the repository is found by walking up to ``.git`` and only the default excludes
file is used.

Answers are cached per root for the life of the process (a watcher event must not start two
processes); the files themselves are re-read by every scan.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from deepfim import env

log = logging.getLogger(__name__)
GIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GitLayout:
    """The repository a workspace root belongs to.

    Attributes:
        toplevel: the repository's work tree root.
        root_in_repo: the workspace root relative to `toplevel` ("" when they are the same).
        exclude_files: ``core.excludesFile`` then ``info/exclude`` (lowest precedence first);
            they may not exist.
    """

    toplevel: Path
    root_in_repo: str
    exclude_files: tuple[Path, ...]


def git_layout(root: Path) -> GitLayout | None:
    """The git layout of `root`, or None when it is not inside a git work tree."""
    return _layout(os.path.realpath(root))


@lru_cache(maxsize=64)
def _layout(root: str) -> GitLayout | None:
    found = _ask_git(root)
    if found is None:
        found = _walk_up(root)
    if found is None:
        return None
    toplevel, info_exclude, excludes_file = found
    toplevel = Path(os.path.realpath(toplevel))
    rel = os.path.relpath(root, toplevel)
    if rel == ".." or rel.startswith(".." + os.sep):  # root inside .git, or a confused answer
        return None
    files = tuple(Path(p) for p in (excludes_file or env.git_default_excludes_file(), info_exclude))
    return GitLayout(toplevel, "" if rel == "." else Path(rel).as_posix(), files)


def _git(root: str, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            ["git", "-C", root, *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:  # no git program, or it hung
        log.debug("git %s in %s: %s", args[0], root, exc)
        return None


def _ask_git(root: str) -> tuple[str, str, str | None] | None:
    """(toplevel, info/exclude path, core.excludesFile or None) from git itself."""
    where = _git(root, "rev-parse", "--show-toplevel", "--git-path", "info/exclude")
    if where is None or where.returncode != 0:
        return None
    lines = where.stdout.splitlines()
    if len(lines) != 2:
        return None
    toplevel, info_exclude = lines
    config = _git(root, "config", "--path", "--get", "core.excludesFile")
    excludes_file = config.stdout.strip() if config is not None and config.returncode == 0 else None
    return toplevel, os.path.join(root, info_exclude), excludes_file or None


def _walk_up(root: str) -> tuple[str, str, None] | None:
    """The enclosing repository without a git program: ``.git`` as a directory, or as a
    ``gitdir:`` file (worktrees and submodules; a worktree's ``commondir`` holds info/)."""
    directory = Path(root)
    for candidate in (directory, *directory.parents):
        dot_git = candidate / ".git"
        if dot_git.is_dir():
            return str(candidate), str(dot_git / "info" / "exclude"), None
        if dot_git.is_file():
            try:
                text = dot_git.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            if not text.startswith("gitdir:"):
                return None
            git_dir = (candidate / text[len("gitdir:") :].strip()).resolve()
            try:
                common = (git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()).resolve()
            except (OSError, UnicodeDecodeError):
                common = git_dir
            return str(candidate), str(common / "info" / "exclude"), None
    return None
