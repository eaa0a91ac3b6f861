"""Post-processing of a completion for its hole kind (engine/evaluation/tasks.py)."""

from __future__ import annotations

import pytest

from deepfim.engine.evaluation.tasks import FimTask, finalize


def _task(kind: str, prefix: str = "x = 1\n") -> FimTask:
    return FimTask("t", "heldout", "python", kind, prefix, "", "")


@pytest.mark.parametrize("kind", ["line", "midline", "single"])
def test_single_line_holes_keep_the_first_line(kind):
    assert _task(kind).single_line
    assert finalize(_task(kind), "foo(a)\nbar()") == "foo(a)"
    assert finalize(_task(kind), "\nbar()") == ""


def test_block_holes_keep_lines_until_the_block_ends():
    assert not _task("block").single_line
    text = "    a = 1\n\n    if a:\n        b = 2\nc = 3\n"
    assert finalize(_task("block"), text) == "    a = 1\n\n    if a:\n        b = 2"
    assert finalize(_task("block"), "\n\n") == ""
    # a hole that starts inside a line continues it: the block ends below the line's indentation
    inside = _task("block", prefix="def f():\n    if x:")
    assert finalize(inside, " y()\n        z()\n    w()\nv()\n") == " y()\n        z()\n    w()"
