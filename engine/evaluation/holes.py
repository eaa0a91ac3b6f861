"""Holes cut at tree-sitter node boundaries from held-out files.

* single-line: from the start of a named node (not inside a string or comment) to the end
  of that line — what an editor asks while typing a statement;
* multi-line: the whole body of a block — Python: the `block` of a def/if/for/while/with/
  try/except/else/class; TypeScript/JavaScript: the lines between a `statement_block`'s
  ``{`` and ``}`` — 2 to 12 lines, the middle ending with its newline.

Sampling is deterministic for a seed: files are visited in a seeded order, each gives at
most two single-line holes (on different lines) and one multi-line hole. Cross-file
context of a hole is the other held-out files of its package, ranked by
`layout.rank_context_files` (files the cursor file names first).
"""

from __future__ import annotations

import random

from deepfim.context.languages import parser
from deepfim.engine.evaluation.tasks import FimTask
from deepfim.engine.training.corpus import CorpusFile
from deepfim.engine.training.spans import line_bounds, multi_line_candidates, single_line_candidates

HOLE_LANGUAGES = ("python", "typescript", "javascript")  # names in context/languages.py
def _task(f: CorpusFile, src: bytes, start: int, end: int, kind: str, n: int, context) -> FimTask:
    return FimTask(
        task_id=f"{f.repo}/{f.path}#{kind}{n}", suite="heldout", lang=f.lang, kind=kind,
        prefix=src[:start].decode("utf-8"), middle=src[start:end].decode("utf-8"),
        suffix=src[end:].decode("utf-8"), path=f.path, repo=f.repo, context_files=context,
    )  # fmt: skip


def hole_positions(f: CorpusFile, rng: random.Random) -> tuple[bytes, list[tuple[int, int]], list[tuple[int, int]]]:
    """(UTF-8 text, single-line spans, multi-line spans), each list in a seeded order.

    Single-line spans are on distinct lines (one random node start per line).
    """
    src = f.text.encode("utf-8")
    root = parser(f.lang).parse(src).root_node
    rows = single_line_candidates(src, root)
    order = sorted(rows)
    rng.shuffle(order)
    singles = [(start, line_bounds(src, start)[1]) for start in (rng.choice(rows[row]) for row in order)]
    multis = multi_line_candidates(src, root, f.lang)
    rng.shuffle(multis)
    return src, singles, multis


def extract_holes(files: list[CorpusFile], lang: str, n_single: int, n_multi: int, seed: int = 0) -> list[FimTask]:
    """Deterministic single- and multi-line holes of one language from held-out files.

    Files are visited in a seeded order taking at most 2 single-line and 1 multi-line hole
    each; when that does not reach the counts (few files), later rounds take more per file.
    """
    if lang not in HOLE_LANGUAGES:
        raise ValueError(f"no hole extraction for language {lang!r}; known: {sorted(HOLE_LANGUAGES)}")
    pool = sorted((f for f in files if f.lang == lang), key=lambda f: (f.repo, f.path))
    random.Random(f"holes:{seed}:{lang}").shuffle(pool)
    by_package: dict[tuple[str, str], list[CorpusFile]] = {}
    for f in files:
        by_package.setdefault((f.repo, f.package), []).append(f)
    positions: dict[str, tuple] = {}
    contexts: dict[str, tuple] = {}
    taken = {"single": [], "multi": []}
    want = {"single": n_single, "multi": n_multi}
    for per_file in (1, 2, 4, 8, 16):
        caps = {"single": 2 * per_file, "multi": per_file}
        for f in pool:
            if all(len(taken[k]) >= want[k] for k in want):
                return taken["single"] + taken["multi"]
            key = f"{f.repo}/{f.path}"
            if key not in positions:
                positions[key] = hole_positions(f, random.Random(f"holes:{seed}:{key}"))
                siblings = [(g.path, g.text) for g in by_package[(f.repo, f.package)]] if f.package else []
                contexts[key] = tuple(rank_context_files(f.path, f.text, siblings))
            src, singles, multis = positions[key]
            for kind, spans in (("single", singles), ("multi", multis)):
                lo = caps[kind] // 2 if per_file > 1 else 0
                for n in range(lo, min(caps[kind], len(spans))):
                    if len(taken[kind]) < want[kind]:
                        taken[kind].append(_task(f, src, *spans[n], kind, n, contexts[key]))
    return taken["single"] + taken["multi"]
