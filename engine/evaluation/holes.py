"""Holes cut at tree-sitter node boundaries from the files of a repository.

* line: from a named node's start at the beginning of a statement (the first non-blank
  column of its line) to the end of that line — what an editor asks at a new statement;
* midline: from a named node's start inside a line (not in a string or comment) to the
  line's end — the cursor in the middle of a statement;
* block: the whole body of a block — Python: the `block` of a def/if/for/while/with/try/
  except/else/class; TypeScript/JavaScript: the lines between a `statement_block`'s ``{``
  and ``}`` — 2 to 12 lines, the middle ending with its newline.

Training cuts the same kinds (`engine/training/spans.py`). Sampling is deterministic for a
seed: files in a seeded order, at most one hole of each kind per file per round.
"""

from __future__ import annotations

import random

from deepfim.context.languages import language_for, parser
from deepfim.engine.evaluation.tasks import FimTask
from deepfim.engine.training.spans import line_bounds, multi_line_candidates, single_line_candidates

HOLE_LANGUAGES = ("python", "typescript", "javascript")  # names in context/languages.py
KINDS = ("line", "midline", "block")


def _spans(text: str, lang: str, rng: random.Random) -> dict[str, list[tuple[int, int]]]:
    """Character spans of each kind in a seeded order."""
    src = text.encode("utf-8")
    root = parser(lang).parse(src).root_node
    out: dict[str, list[tuple[int, int]]] = {"line": [], "midline": [], "block": []}
    for _, starts in sorted(single_line_candidates(src, root).items()):
        line_start, line_end = line_bounds(src, starts[0])
        first = line_start + len(src[line_start:line_end]) - len(src[line_start:line_end].lstrip())
        at_start = [s for s in starts if s == first]
        inside = [s for s in starts if s != first]
        if at_start:
            out["line"].append((at_start[0], line_end))
        if inside:
            out["midline"].append((rng.choice(inside), line_end))
    out["block"] = multi_line_candidates(src, root, lang)
    for spans in out.values():
        rng.shuffle(spans)

    def chars(b: int) -> int:
        return len(src[:b].decode("utf-8", "replace"))

    return {k: [(chars(a), chars(b)) for a, b in v] for k, v in out.items()}


def repo_holes(
    files: list[tuple[str, str]], repo: str, suite: str, per_kind: int, seed: int = 0, langs=HOLE_LANGUAGES
) -> list[FimTask]:
    """Up to `per_kind` holes of each kind from a repository's (path, text) files."""
    pool = []
    for rel, text in sorted(files):
        spec = language_for(rel.rsplit("/", 1)[-1])
        if spec is not None and spec.name in langs and spec.name in HOLE_LANGUAGES:
            pool.append((rel, text, spec.name))
    random.Random(f"holes:{seed}:{repo}").shuffle(pool)
    spans = {}
    taken: dict[str, list[FimTask]] = {k: [] for k in KINDS}
    for round_ in range(8):
        for rel, text, lang in pool:
            if all(len(v) >= per_kind for v in taken.values()):
                break
            if rel not in spans:
                spans[rel] = _spans(text, lang, random.Random(f"holes:{seed}:{repo}/{rel}"))
            for kind in KINDS:
                if len(taken[kind]) < per_kind and round_ < len(spans[rel][kind]):
                    a, b = spans[rel][kind][round_]
                    task_id = f"{repo}/{rel}#{kind}{round_}"
                    taken[kind].append(
                        FimTask(task_id, suite, lang, kind, text[:a], text[a:b], text[b:], rel, repo)
                    )
    return [t for kind in KINDS for t in taken[kind]]
