"""A FIM evaluation task and the post-processing every model's answer goes through.

Post-processing is the same for every model (and the copy baseline), so scores compare:
a single-line hole ("line" at a statement start, "midline" inside a line, HumanEval's
"single") keeps the answer's first line; a multi-line hole ("block") keeps lines until the
first non-blank line indented less than the answer's first line (the block has ended).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SINGLE_LINE_KINDS = ("line", "midline", "single")


@dataclass(frozen=True)
class FimTask:
    """One hole: the text around it and the expected middle, in a file of a repository."""

    task_id: str
    suite: str  # "heldout" | "repos" | "humaneval"
    lang: str
    kind: str  # "line" | "midline" | "block" | "single" (HumanEval)
    prefix: str
    middle: str
    suffix: str
    path: str | None = None  # workspace-relative
    repo: str | None = None
    extra: dict = field(default_factory=dict, hash=False, compare=False)  # HumanEval: test, entry_point

    @property
    def single_line(self) -> bool:
        return self.kind in SINGLE_LINE_KINDS


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def finalize(task: FimTask, completion: str) -> str:
    """The part of a raw completion that is scored."""
    if task.single_line:
        return completion.split("\n", 1)[0]
    lines = completion.split("\n")
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        return ""
    # A hole that starts mid-line continues that line: its indentation is the prefix's.
    base = _indent(first) if task.prefix.endswith("\n") or not task.prefix else _indent(task.prefix.rsplit("\n", 1)[-1])
    kept = []
    for line in lines:
        if line.strip() and _indent(line) < base and kept:
            break
        kept.append(line)
    return "\n".join(kept)
