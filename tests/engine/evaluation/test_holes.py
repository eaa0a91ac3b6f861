"""Holes of the evaluation (engine/evaluation/holes.py `repo_holes`): line, midline and block holes
cut at tree-sitter node boundaries (checked against the parse tree here), never inside strings or
comments, deterministic per seed, spread over the files."""

from __future__ import annotations

from collections import Counter

import pytest
from eval_corpus import repo_files

from deepfim.context.languages import parser
from deepfim.engine.evaluation.holes import KINDS, repo_holes

LANGS = {"py": "python", "ts": "typescript", "js": "javascript"}
PY_BLOCK_OWNERS = {"function_definition", "if_statement", "for_statement", "while_statement", "with_statement",
                   "try_statement", "except_clause", "else_clause", "elif_clause", "finally_clause",
                   "class_definition"}  # fmt: skip
NOT_CODE = {"string", "comment", "template_string", "regex", "line_comment", "block_comment"}


class Tree:
    """The parse tree of one file in character offsets: node starts, no-hole ranges, blocks."""

    def __init__(self, text: str, lang: str) -> None:
        src = text.encode()
        self.starts: set[int] = set()
        self.not_code: list[tuple[int, int]] = []
        self.blocks: list[tuple[str, str, int, int]] = []  # (type, parent type, start, end)
        stack = [parser(lang).parse(src).root_node]
        while stack:
            n = stack.pop()
            a, b = len(src[: n.start_byte].decode()), len(src[: n.end_byte].decode())
            if n.is_named:
                self.starts.add(a)
            if n.type in NOT_CODE:
                self.not_code.append((a, b))
            if n.type in ("block", "statement_block"):
                self.blocks.append((n.type, n.parent.type if n.parent else "", a, b))
            stack.extend(n.children)

    def in_string_or_comment(self, offset: int) -> bool:
        return any(a <= offset < b for a, b in self.not_code)


def _holes(per_kind: int = 3, seed: int = 0, files=None):
    return repo_holes(files or repo_files(), "demo", "heldout", per_kind, seed)


def _last_line(text: str) -> str:
    return text.rsplit("\n", 1)[-1]


def test_every_hole_splits_its_file_and_names_where_it_is():
    texts = dict(repo_files())
    tasks = _holes(per_kind=8)
    assert {t.kind for t in tasks} == set(KINDS)
    assert {t.path for t in tasks} == {"pkg/mod.py", "pkg/other.py", "web/clamp.ts", "web/format.js"}  # no md, rs
    assert len({t.task_id for t in tasks}) == len(tasks)
    for t in tasks:
        assert t.prefix + t.middle + t.suffix == texts[t.path]
        assert t.middle.strip() and (t.repo, t.suite) == ("demo", "heldout")
        assert t.lang == LANGS[t.path.rsplit(".", 1)[1]] and t.task_id.startswith(f"demo/{t.path}#{t.kind}")


def test_line_and_midline_holes_start_at_a_node_and_end_at_the_line_end():
    tasks = [t for t in _holes(per_kind=8) if t.kind in ("line", "midline")]
    assert {(t.kind, t.lang) for t in tasks} == {(k, lang) for k in ("line", "midline") for lang in LANGS.values()}
    for t in tasks:
        tree = Tree(t.prefix + t.middle + t.suffix, t.lang)
        assert len(t.prefix) in tree.starts, t.task_id
        assert not tree.in_string_or_comment(len(t.prefix)), t.task_id
        assert "\n" not in t.middle and (t.suffix == "" or t.suffix.startswith("\n"))
        if t.kind == "line":  # at the statement's first column
            assert _last_line(t.prefix).strip() == "", t.task_id
        else:  # after it, inside the line
            assert _last_line(t.prefix).strip(), t.task_id
        assert t.single_line


def test_block_holes_are_whole_block_bodies_of_2_to_12_lines():
    tasks = [t for t in _holes(per_kind=8) if t.kind == "block"]
    assert {t.lang for t in tasks} == set(LANGS.values())
    for t in tasks:
        assert t.prefix.endswith("\n") and t.middle.endswith("\n") and 2 <= t.middle.count("\n") <= 12
        tree = Tree(t.prefix + t.middle + t.suffix, t.lang)
        first = len(t.prefix) + len(t.middle) - len(t.middle.lstrip())  # the body's first statement
        if t.lang == "python":
            # a `block` node starts at the first statement and ends on the middle's last line
            owners = {parent for kind, parent, a, b in tree.blocks
                      if kind == "block" and a == first and len(t.prefix) + len(t.middle) - 1 == b}  # fmt: skip
            assert owners and owners <= PY_BLOCK_OWNERS, t.task_id
        else:
            # the lines between a statement block's `{` (ending the line before) and `}` (starting the next)
            brace = len(t.prefix.rstrip()) - 1
            close = len(t.prefix) + len(t.middle) + len(t.suffix) - len(t.suffix.lstrip())
            assert t.prefix.rstrip().endswith("{") and t.suffix.lstrip().startswith("}"), t.task_id
            assert ("statement_block", brace, close + 1) in {(k, a, b) for k, _, a, b in tree.blocks}, t.task_id
        assert not t.single_line


def test_holes_are_deterministic_per_seed_and_spread_over_files():
    first = _holes(per_kind=2, seed=3)
    again = _holes(per_kind=2, seed=3, files=list(reversed(repo_files())))  # input order does not matter
    assert [(t.task_id, t.prefix, t.middle) for t in first] == [(t.task_id, t.prefix, t.middle) for t in again]
    seeds = {tuple(t.task_id + t.middle for t in _holes(per_kind=2, seed=s)) for s in range(4)}
    assert len(seeds) > 1  # the seed chooses
    # at most per_kind of each kind; with at least that many files to cut from, each from another file
    assert Counter(t.kind for t in first) == {k: 2 for k in KINDS}
    for kind in KINDS:
        assert len({t.path for t in first if t.kind == kind}) == 2


def test_languages_can_be_restricted_and_a_repository_without_code_has_no_holes():
    tasks = repo_holes(repo_files(), "demo", "heldout", 4, 0, langs=("python",))
    assert tasks and {t.lang for t in tasks} == {"python"}
    assert repo_holes([("README.md", "# x\n\n    y = 1\n")], "demo", "heldout", 4) == []


@pytest.mark.parametrize("per_kind", [0, 1])
def test_per_kind_bounds_the_holes_of_each_kind(per_kind):
    assert Counter(t.kind for t in _holes(per_kind=per_kind)) == ({k: per_kind for k in KINDS} if per_kind else {})
