"""Gitignore-style rules: nested ``.gitignore`` files, ``.deepfimignore``, git's own exclude
files and built-in defaults.

Patterns are matched by `pathspec`'s `GitIgnoreSpec` (gitignore(5) semantics, including
git's edge cases), one spec per rule file. What this module adds is git's layering: rules in
deeper directories take precedence over shallower ones, then ``.git/info/exclude``, then
``core.excludesFile`` (`git_excludes.py` finds both), then settings, then the built-in
defaults; within one directory ``.deepfimignore`` overrides ``.gitignore`` (last match
wins). As in git, nothing inside an excluded directory can be re-included: the walk never
enters it.

The built-in defaults (vendored, generated and build trees; lock files; minified bundles)
act as a rule file at the root below every other, so ``!build/`` in a ``.deepfimignore``
brings a ``build/`` directory back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

from deepfim.context.git_excludes import git_layout

IGNORE_FILES = (".gitignore", ".deepfimignore")

DEFAULT_RULES = """
.git/
.hg/
.svn/
.jj/
node_modules/
bower_components/
jspm_packages/
__pycache__/
.venv/
.tox/
.nox/
.mypy_cache/
.pytest_cache/
.ruff_cache/
.ipynb_checkpoints/
.eggs/
*.egg-info/
site-packages/
.gradle/
.idea/
.next/
.nuxt/
.svelte-kit/
.parcel-cache/
.turbo/
.terraform/
.cache/
build/
dist/
target/
out/
obj/
cmake-build-*/
_build/
vendor/
third_party/
Pods/
DerivedData/
coverage/
htmlcov/
*.min.js
*.min.css
*.map
*.pyc
*.lock
package-lock.json
pnpm-lock.yaml
go.sum
*_pb2.py
*_pb2_grpc.py
*.pb.go
*.generated.*
"""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules of one ignore file (or of several files of one directory, in order).

    Attributes:
        base: the rule file's directory relative to the workspace root ("" for the root, and
            for files above it or outside it: git's exclude files, the defaults).
        prefix: the workspace root relative to the directory the rules are anchored to, for
            rules that live above the root (the repository's top level when the workspace is
            a subdirectory of it); "" otherwise.
        spec: the compiled patterns.
    """

    base: str
    prefix: str
    spec: GitIgnoreSpec

    @classmethod
    def parse(cls, text: str, base: str = "", prefix: str = "") -> RuleSet:
        """Rules from gitignore-format text; lines that are not valid patterns are dropped."""
        lines = text.splitlines()
        try:
            return cls(base, prefix, GitIgnoreSpec.from_lines(lines))
        except (ValueError, re.error):  # one malformed line must not cost the whole file
            kept = [line for line in lines if _valid(line)]
            return cls(base, prefix, GitIgnoreSpec.from_lines(kept))

    def match(self, rel: str, is_dir: bool) -> bool | None:
        """True: ignored, False: re-included, None: no rule here matches."""
        if self.base:
            if not rel.startswith(self.base + "/"):
                return None
            rel = rel[len(self.base) + 1 :]
        if self.prefix:
            rel = f"{self.prefix}/{rel}" if rel else self.prefix
        return self.spec.check_file(rel + "/" if is_dir else rel).include


def _valid(line: str) -> bool:
    try:
        GitIgnoreSpec.from_lines([line])
    except (ValueError, re.error):  # "!" alone, a trailing backslash, "[z-a]"
        return False
    return True


DEFAULTS = RuleSet.parse(DEFAULT_RULES)


def is_ignored(stack: list[RuleSet], rel: str, is_dir: bool) -> bool:
    """Whether `rel` is ignored by the rule sets of its ancestors (lowest precedence first)."""
    for rule_set in reversed(stack):
        verdict = rule_set.match(rel, is_dir)
        if verdict is not None:
            return verdict
    return False


def read_text(path: Path) -> str | None:
    """An ignore file's text, or None when it cannot be read (never fatal)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def read_rule_set(directory: Path, base: str, prefix: str = "") -> RuleSet | None:
    """The combined ``.gitignore`` + ``.deepfimignore`` rules of one directory, or None."""
    texts = [text for name in IGNORE_FILES if (text := read_text(directory / name)) is not None]
    return RuleSet.parse("\n".join(texts), base, prefix) if texts else None


def root_stack(root: Path, extra_patterns: tuple[str, ...] = ()) -> list[RuleSet]:
    """Rule sets that apply above the root's own ignore files, lowest precedence first:
    built-in defaults, settings, git's ``core.excludesFile`` and ``.git/info/exclude``, and
    the ignore files between the repository's top level and a workspace below it.

    A rule file above the root that ignores the root itself (a dotfiles repository's ``*``)
    is left out: the user opened that directory to work in it."""
    stack = [DEFAULTS]
    if extra_patterns:
        stack.append(RuleSet.parse("\n".join(extra_patterns)))
    layout = git_layout(root)
    if layout is None:
        return stack
    prefix = layout.root_in_repo
    above = [RuleSet.parse(text, prefix=prefix) for p in layout.exclude_files if (text := read_text(p)) is not None]
    directory, parts = layout.toplevel, prefix.split("/") if prefix else []
    for depth, part in enumerate(parts):  # the top level down to the root's parent
        above.append(read_rule_set(directory, "", "/".join(parts[depth:])))
        directory = directory / part
    return stack + [r for r in above if r is not None and not (r.prefix and r.match("", is_dir=True))]
