"""git's own ignore rules, in real git repositories: ``.git/info/exclude``,
``core.excludesFile`` (set, and its XDG default), nested ``.gitignore`` files, a workspace
opened below the repository's top level, and git itself as the oracle."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ctx_fixtures import write_tree

from deepfim.context import discovery
from deepfim.context.git_excludes import _layout
from deepfim.context.records import SkipRecord

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git program")


@pytest.fixture(autouse=True)
def isolated_git(tmp_path, monkeypatch) -> Path:
    """git reads this test's own global config, none of the machine's."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    _layout.cache_clear()
    yield home
    _layout.cache_clear()


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, files: dict[str, str]) -> Path:
    write_tree(root, files)
    git(root, "init", "-q")
    return root


REPO_FILES = {
    ".gitignore": "*.gen.py\n/scratch/\n",
    "main.py": "def main(): pass\n",
    "util.py": "def util(): pass\n",
    "model.gen.py": "x = 1\n",  # root .gitignore
    "scratch/try.py": "x = 1\n",  # root .gitignore, anchored
    "notes_local.py": "x = 1\n",  # .git/info/exclude
    "app/.gitignore": "!keep.gen.py\nfixtures/\n",
    "app/core.py": "def core(): pass\n",
    "app/keep.gen.py": "x = 1\n",  # re-included by the nested .gitignore
    "app/drop.gen.py": "x = 1\n",
    "app/fixtures/big.py": "x = 1\n",  # nested .gitignore
    "app/editor_backup.py": "x = 1\n",  # core.excludesFile
    "lib/helpers.py": "def helper(): pass\n",
}


def _repo_with_every_rule(tmp_path: Path, home: Path) -> Path:
    root = make_repo(tmp_path / "repo", REPO_FILES)
    (root / ".git" / "info" / "exclude").write_text("notes_local.py\n")
    excludes = home / "my-global-ignore"
    excludes.write_text("*_backup.py\n")
    git(root, "config", "--global", "core.excludesFile", str(excludes))
    return root


def test_info_exclude_excludes_file_and_nested_gitignores(tmp_path, isolated_git, make_workspace):
    root = _repo_with_every_rule(tmp_path, isolated_git)
    ws = make_workspace(root)
    assert set(ws.files()) == {"main.py", "util.py", "app/core.py", "app/keep.gen.py", "lib/helpers.py"}


def test_the_files_found_are_the_ones_git_does_not_ignore(tmp_path, isolated_git, make_workspace):
    """git itself is the oracle: every Python file git lists as untracked-and-not-ignored is
    indexed, and nothing else."""
    root = _repo_with_every_rule(tmp_path, isolated_git)
    not_ignored = git(root, "ls-files", "--others", "--exclude-standard").split()
    assert "app/keep.gen.py" in not_ignored and "app/editor_backup.py" not in not_ignored
    ws = make_workspace(root)
    assert sorted(ws.files()) == sorted(p for p in not_ignored if p.endswith(".py"))


def test_default_excludes_file_under_xdg_config_home(tmp_path, isolated_git, make_workspace):
    root = make_repo(tmp_path / "repo", {"a.py": "x = 1\n", "a_backup.py": "x = 1\n"})
    default = isolated_git / ".config" / "git" / "ignore"
    default.parent.mkdir(parents=True)
    default.write_text("*_backup.py\n")
    assert make_workspace(root).files() == ["a.py"]


MONOREPO_FILES = {
    ".gitignore": "/services/api/tmp/\n*.local.py\n",
    "services/.gitignore": "api/generated/\n",
    "services/api/main.py": "def main(): pass\n",
    "services/api/settings.local.py": "x = 1\n",
    "services/api/tmp/t.py": "x = 1\n",
    "services/api/generated/g.py": "x = 1\n",
    "services/api/handlers/h.py": "def h(): pass\n",
}


def test_workspace_below_the_top_level_inherits_the_gitignores_above_it(tmp_path, isolated_git, make_workspace):
    repo = make_repo(tmp_path / "repo", MONOREPO_FILES)
    (repo / ".git" / "info" / "exclude").write_text("/services/api/handlers/private.py\n")
    (repo / "services/api/handlers/private.py").write_text("x = 1\n")
    ws = make_workspace(repo / "services" / "api")
    assert set(ws.files()) == {"main.py", "handlers/h.py"}


def test_a_watch_event_applies_the_same_rules(tmp_path, isolated_git):
    root = _repo_with_every_rule(tmp_path, isolated_git)
    for rel in ("notes_local.py", "app/editor_backup.py", "app/fixtures/big.py", "scratch/try.py"):
        assert discovery.check_path(root, rel, 1 << 20) is None, rel
    kept = discovery.check_path(root, "app/keep.gen.py", 1 << 20)
    assert kept is not None and not isinstance(kept, SkipRecord) and kept.rel == "app/keep.gen.py"


def test_without_a_git_program_info_exclude_still_applies(tmp_path, isolated_git, monkeypatch, make_workspace):
    root = _repo_with_every_rule(tmp_path, isolated_git)
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    _layout.cache_clear()
    files = set(make_workspace(root).files())
    assert "notes_local.py" not in files and "model.gen.py" not in files
    assert "app/editor_backup.py" in files  # core.excludesFile needs git to read its config


def test_rules_above_the_root_that_ignore_the_root_itself_are_left_out(tmp_path, isolated_git, make_workspace):
    """A dotfiles repository in the home directory ignores everything (``*``); a project
    below it that is not a repository of its own is still indexed."""
    home_repo = make_repo(tmp_path / "dotfiles", {".gitignore": "*\n!.bashrc\n", ".bashrc": "alias ll='ls -l'\n"})
    project = write_tree(home_repo / "code" / "proj", {"main.py": "def main(): pass\n", ".gitignore": "out/\n"})
    write_tree(project, {"out/x.py": "x = 1\n"})
    assert make_workspace(project).files() == ["main.py"]
