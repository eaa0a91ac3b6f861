"""Hole extraction (engine/evaluation/holes.py): holes start at tree-sitter node boundaries,
multi-line holes are whole block bodies, deterministic, with the package's other files as context."""

from __future__ import annotations

from eval_corpus import PY, heldout_files

from deepfim.context.languages import parser
from deepfim.engine.evaluation.holes import extract_holes


def _node_starts(text: str, lang: str) -> set[int]:
    src = text.encode()
    starts, stack = set(), [parser(lang).parse(src).root_node]
    while stack:
        n = stack.pop()
        if n.is_named:
            starts.add(len(src[: n.start_byte].decode()))
        stack.extend(n.children)
    return starts


def test_single_line_holes_start_at_a_node_and_run_to_the_line_end():
    for lang in ("python", "typescript"):
        tasks = [t for t in extract_holes(heldout_files(), lang, 6, 0, seed=1) if t.kind == "single"]
        assert tasks
        for t in tasks:
            text = t.prefix + t.middle + t.suffix
            assert len(t.prefix) in _node_starts(text, lang)
            assert "\n" not in t.middle and (t.suffix == "" or t.suffix.startswith("\n"))
            assert "docstring" not in t.middle and "comment" not in t.middle  # never inside strings/comments


def test_multi_line_holes_are_whole_block_bodies():
    py = [t for t in extract_holes(heldout_files(), "python", 0, 3, seed=0) if t.kind == "multi"]
    ts = [t for t in extract_holes(heldout_files(), "typescript", 0, 3, seed=0) if t.kind == "multi"]
    assert py and ts
    for t in py:
        assert t.prefix.rstrip().endswith(":") and t.prefix.endswith("\n") and t.middle.endswith("\n")
        assert 2 <= t.middle.count("\n") <= 12
    for t in ts:
        assert t.prefix.rstrip().endswith("{") and t.suffix.lstrip().startswith("}")
    bodies = {t.middle for t in py}
    assert bodies <= {
        '        total = 10\n        print("clamped", total)\n',
        "        self.size = size\n        self.items = []\n",
        '        if len(self.items) >= self.size:\n            raise ValueError("full")\n'
        "        self.items.append(item)\n",
        PY.split("class Box:\n")[1],
        PY.split("def compute(x):\n")[1].split("\n\n\nclass")[0] + "\n",
    }


def test_holes_are_deterministic_and_carry_package_context():
    a = extract_holes(heldout_files(), "python", 4, 2, seed=3)
    b = extract_holes(heldout_files(), "python", 4, 2, seed=3)
    assert [(t.task_id, t.middle) for t in a] == [(t.task_id, t.middle) for t in b]
    for t in a:
        assert [p for p, _ in t.context_files] == (["pkg/other.py"] if t.path == "pkg/mod.py" else ["pkg/mod.py"])
