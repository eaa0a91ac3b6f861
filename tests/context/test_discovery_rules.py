"""Which files the scan indexes: nested .gitignore, .deepfimignore, built-in defaults."""

from __future__ import annotations

import pytest
from ctx_fixtures import write_tree

from deepfim.context.ignore import RuleSet, is_ignored


def _ignored(patterns: str, rel: str, is_dir: bool = False) -> bool:
    return is_ignored([RuleSet.parse(patterns)], rel, is_dir)


@pytest.mark.parametrize(
    "patterns, rel, is_dir, expected",
    [
        ("*.log", "a/b/x.log", False, True),  # no slash: any depth
        ("/top.txt", "top.txt", False, True),  # leading slash: anchored
        ("/top.txt", "sub/top.txt", False, False),
        ("doc/*.md", "doc/a.md", False, True),  # a middle slash anchors too
        ("doc/*.md", "x/doc/a.md", False, False),
        ("doc/*.md", "doc/sub/a.md", False, False),  # * does not cross /
        ("doc/**/a.md", "doc/x/y/a.md", False, True),
        ("**/cache", "deep/er/cache", True, True),
        ("out/", "out", True, True),  # trailing slash: directories only
        ("out/", "out", False, False),
        ("*.py\n!keep.py", "keep.py", False, False),  # negation re-includes
        ("file?.c", "file1.c", False, True),
        ("file[0-9].c", "filex.c", False, False),
        ("file[!0-9].c", "filex.c", False, True),
        ("\\#hash", "#hash", False, True),  # escaped comment character
        ("# comment\n\n  \n", "comment", False, False),
        ("abc/**", "abc/x/y", False, True),
    ],
)
def test_gitignore_pattern_semantics(patterns, rel, is_dir, expected):
    assert _ignored(patterns, rel, is_dir) is expected


def test_nested_gitignore_deepfimignore_and_defaults(tmp_path, make_workspace):
    root = write_tree(
        tmp_path / "repo",
        {
            ".gitignore": "*.log.py\nbuild/\nsecret_area/\n",
            "app/.gitignore": "!keep.log.py\nlocal/\n",
            ".deepfimignore": "docs/generated/\n!dist/\n",
            "main.py": "def main(): pass\n",
            "x.log.py": "a = 1\n",
            "app/keep.log.py": "a = 1\n",
            "app/drop.log.py": "a = 1\n",
            "app/local/tmp.py": "a = 1\n",
            "app/core.py": "def core(): pass\n",
            "build/gen.py": "a = 1\n",
            "docs/generated/api.md": "# api\n",
            "docs/guide.md": "# guide\n",
            "secret_area/x.py": "a = 1\n",
            "node_modules/lib/index.js": "module.exports = 1\n",
            "env/pyvenv.cfg": "home = /usr\n",
            "env/lib/site.py": "a = 1\n",
            "dist/bundle.py": "a = 1\n",  # built-in default, re-included by .deepfimignore
            "web/app.min.js": "var a=1\n",
            "web/app.js": "var a = 1;\n",
            "web/package-lock.json": "{}\n",
            "target/debug/out.rs": "fn x() {}\n",
            "notes.xyz": "unknown kind of file\n",
        },
    )
    ws = make_workspace(root)
    assert set(ws.files()) == {
        "main.py",
        "app/keep.log.py",
        "app/core.py",
        "docs/guide.md",
        "dist/bundle.py",
        "web/app.js",
    }


def test_settings_extra_ignore_and_a_git_info_exclude(tmp_path, make_workspace):
    root = write_tree(
        tmp_path / "repo",
        {".git/info/exclude": "private.py\n", "private.py": "x = 1\n", "gen/a.py": "x = 1\n", "ok.py": "x = 1\n"},
    )
    ws = make_workspace(root, extra_ignore=("gen/",))
    assert ws.files() == ["ok.py"]


def test_ignore_file_changes_apply_on_the_next_scan(tmp_path, make_workspace):
    root = write_tree(tmp_path / "repo", {"a.py": "x = 1\n", "b.py": "y = 1\n"})
    ws = make_workspace(root)
    assert ws.files() == ["a.py", "b.py"]
    (root / ".deepfimignore").write_text("b.py\n")
    ws.scan()
    assert ws.files() == ["a.py"]
