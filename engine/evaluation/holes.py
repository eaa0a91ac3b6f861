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
from collections.abc import Iterator

from deepfim.context.languages import parser
from deepfim.engine.evaluation.tasks import FimTask
from deepfim.engine.training.corpus import CorpusFile
from deepfim.engine.training.layout import rank_context_files

HOLE_LANGUAGES = ("python", "typescript", "javascript")  # names in context/languages.py
NO_HOLE_INSIDE = {
    "comment", "string", "template_string", "regex", "string_content", "string_fragment",
    "concatenated_string", "line_comment", "block_comment", "ERROR",
}  # fmt: skip
PY_BLOCK_PARENTS = {
    "function_definition", "if_statement", "elif_clause", "else_clause", "for_statement",
    "while_statement", "with_statement", "try_statement", "except_clause", "finally_clause",
    "class_definition",
}  # fmt: skip
MIN_BLOCK_LINES, MAX_BLOCK_LINES = 2, 12
MAX_SINGLE_CHARS = 120


def _named_nodes(node) -> Iterator:
    """Named nodes in document order, not descending into strings and comments."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type in NO_HOLE_INSIDE:
            continue
        if n.is_named:
            yield n
        stack.extend(reversed(n.children))


def _line_bounds(src: bytes, offset: int) -> tuple[int, int]:
    start = src.rfind(b"\n", 0, offset) + 1
    end = src.find(b"\n", offset)
    return start, len(src) if end < 0 else end


def single_line_candidates(src: bytes, root) -> dict[int, list[int]]:
    """Row -> byte offsets where a single-line hole may start."""
    rows: dict[int, list[int]] = {}
    for n in _named_nodes(root):
        if n.type in ("module", "program", "block", "statement_block", "class_body"):
            continue
        start = n.start_byte
        _, end = _line_bounds(src, start)
        rest = src[start:end].rstrip()
        if 3 <= len(rest) <= MAX_SINGLE_CHARS and any(chr(c).isalnum() for c in rest if c < 128):
            rows.setdefault(n.start_point.row, [])
            if start not in rows[n.start_point.row]:
                rows[n.start_point.row].append(start)
    return rows


def multi_line_candidates(src: bytes, root, lang: str) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of block bodies: whole lines, ending after a newline."""
    out = []
    for n in _named_nodes(root):
        if lang == "python":
            if n.type != "block" or n.parent is None or n.parent.type not in PY_BLOCK_PARENTS:
                continue
            if n.start_point.row == n.parent.start_point.row:  # `if x: return` on one line
                continue
            first, last = n.start_point.row, n.end_point.row
            start = _line_bounds(src, n.start_byte)[0]
            end = _line_bounds(src, n.end_byte)[1] + 1
        else:
            if n.type != "statement_block":
                continue
            open_end = _line_bounds(src, n.start_byte)[1]
            close_start = _line_bounds(src, n.end_byte - 1)[0]
            if src[n.start_byte + 1 : open_end].strip() or src[close_start : n.end_byte - 1].strip():
                continue
            first, last = n.start_point.row + 1, n.end_point.row - 1
            start, end = open_end + 1, close_start
        if MIN_BLOCK_LINES <= last - first + 1 <= MAX_BLOCK_LINES and end <= len(src) and src[start:end].strip():
            out.append((start, min(end, len(src))))
    return out


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
    singles = [(start, _line_bounds(src, start)[1]) for start in (rng.choice(rows[row]) for row in order)]
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
