"""Post-processing of a completion for its hole kind (engine/evaluation/tasks.py)."""

from __future__ import annotations

from deepfim.engine.evaluation.tasks import FimTask, finalize


def _task(kind: str, prefix: str = "x = 1\n") -> FimTask:
    return FimTask("t", "heldout", "python", kind, prefix, "", "")


def test_finalize_single_line_keeps_the_first_line_and_multi_line_stops_at_dedent():
    assert finalize(_task("single"), "foo(a)\nbar()") == "foo(a)"
    text = "    a = 1\n\n    if a:\n        b = 2\nc = 3\n"
    assert finalize(_task("multi"), text) == "    a = 1\n\n    if a:\n        b = 2"
    assert finalize(_task("multi"), "\n\n") == ""
