"""Gitignore-style rules: nested ``.gitignore`` files, ``.deepfimignore`` and built-in defaults.

Semantics follow git's documentation (gitignore(5)): blank lines and ``#`` comments are
skipped; ``!`` re-includes; a trailing ``/`` matches directories only; a pattern with a
``/`` elsewhere is anchored to the directory of its file, otherwise it matches a name at any
depth; ``*`` and ``?`` do not cross ``/``; ``**`` does; ``[...]`` classes with ``!``/``^``
negation. Rules in deeper directories take precedence, and within one directory
``.deepfimignore`` overrides ``.gitignore`` (last match wins). As in git, nothing inside an
excluded directory can be re-included: the walk never enters it.

The built-in defaults (vendored, generated and build trees; lock files; minified bundles)
act as a rule file at the root below every other, so ``!build/`` in a ``.deepfimignore``
brings a ``build/`` directory back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
class Rule:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool
    pattern: str  # as written, for messages


def _translate(glob: str) -> str:
    """Regex source for a gitignore glob (without anchoring)."""
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                before_ok = i == 0 or glob[i - 1] == "/"
                after = glob[i + 2 : i + 3]
                if before_ok and after == "/":
                    out.append("(?:.*/)?")  # "**/" : zero or more directories
                    i += 3
                    continue
                if before_ok and after == "":
                    out.append(".*")  # trailing "/**": everything inside
                    i += 2
                    continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "^") else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse_rules(text: str) -> list[Rule]:
    """Rules of one ignore file, in file order. Malformed lines are skipped, never fatal."""
    rules = []
    for raw in text.splitlines():
        line = raw.rstrip("\n\r")
        if not line or line.startswith("#"):
            continue
        # trailing spaces are ignored unless escaped
        stripped = line.rstrip(" ")
        if stripped.endswith("\\") and len(stripped) < len(line):
            stripped += " "
        line = stripped
        negated = line.startswith("!")
        if negated:
            line = line[1:]
        elif line.startswith("\\!") or line.startswith("\\#"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        source = _translate(line)
        if not anchored:
            source = "(?:.*/)?" + source
        try:
            regex = re.compile(source + r"\Z", re.DOTALL)
        except re.error:
            continue
        rules.append(Rule(regex, negated, dir_only, raw.strip()))
    return rules


DEFAULTS = parse_rules(DEFAULT_RULES)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules of one directory (``base`` relative to the root, "" for the root)."""

    base: str
    rules: tuple[Rule, ...]

    def match(self, rel: str, is_dir: bool) -> bool | None:
        """True: ignored, False: re-included, None: no rule here matches."""
        if self.base:
            if not rel.startswith(self.base + "/"):
                return None
            rel = rel[len(self.base) + 1 :]
        for rule in reversed(self.rules):
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(rel):
                return not rule.negated
        return None


def is_ignored(stack: list[RuleSet], rel: str, is_dir: bool) -> bool:
    """Whether `rel` is ignored by the rule sets of its ancestors (root first in `stack`)."""
    for rule_set in reversed(stack):
        verdict = rule_set.match(rel, is_dir)
        if verdict is not None:
            return verdict
    return False


def read_rule_set(directory: Path, base: str) -> RuleSet | None:
    """The combined ``.gitignore`` + ``.deepfimignore`` rules of one directory, or None."""
    rules: list[Rule] = []
    for name in IGNORE_FILES:
        try:
            text = (directory / name).read_text(encoding="utf-8", errors="replace")
        except (OSError, ValueError):
            continue
        rules.extend(parse_rules(text))
    if base == "":
        try:
            text = (directory / ".git" / "info" / "exclude").read_text(encoding="utf-8", errors="replace")
            rules[:0] = parse_rules(text)
        except (OSError, ValueError):
            pass
    return RuleSet(base, tuple(rules)) if rules else None


def root_stack(extra_patterns: tuple[str, ...] = ()) -> list[RuleSet]:
    """Rule sets that apply above every ignore file: built-in defaults, then user settings."""
    stack = [RuleSet("", tuple(DEFAULTS))]
    if extra_patterns:
        stack.append(RuleSet("", tuple(parse_rules("\n".join(extra_patterns)))))
    return stack
