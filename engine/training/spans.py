"""Where to cut the FIM hole in a training file: character spans of four kinds.

* ``char``: a random span anywhere (may cross lines, may be empty) — robustness.
* ``line_rest``: from a token-like boundary inside a line (start of a word, bracket or
  quote) to the end of the line, sometimes plus the next 1–3 lines — what the editor asks
  while typing; the evaluation's single-line holes are cut the same way at tree-sitter
  node starts.
* ``lines``: 1–8 whole lines.
* ``block``: the body of an indented block (the lines after a line ending in ``:`` or
  ``{`` that are indented deeper) — the evaluation's multi-line holes.

Spans are cheap text heuristics (no parser) so samples stay fast; `block` falls back to
`lines` in a file without blocks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

SPAN_KINDS = ("char", "line_rest", "lines", "block")
# syntax-node holes (below): a single line from a named node's start, a block body
_BOUNDARY = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z0-9_]|[(\[{\"'`]")


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts += [m.end() for m in re.finditer("\n", text)]
    if starts[-1] == len(text):
        starts.pop()
    return starts or [0]


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def char_span(text: str, rng: random.Random, max_chars: int) -> tuple[int, int]:
    a = rng.randint(0, len(text))
    length = min(int(rng.expovariate(1 / 40)), max_chars, len(text) - a)
    return a, a + length


def line_rest_span(text: str, rng: random.Random, max_chars: int) -> tuple[int, int]:
    starts = [s for s in _line_starts(text) if text[s : _line_end(text, s)].strip()]
    if not starts:
        return char_span(text, rng, max_chars)
    start = rng.choice(starts)
    end = _line_end(text, start)
    line = text[start:end]
    cols = [m.start() for m in _BOUNDARY.finditer(line) if m.start() >= _indent(line)] or [_indent(line)]
    a = start + rng.choice(cols)
    extra = rng.choice((0, 0, 0, 1, 2, 3))
    for _ in range(extra):
        if end < len(text):
            end = _line_end(text, end + 1)
    return a, min(end, a + max_chars)


def lines_span(text: str, rng: random.Random, max_chars: int) -> tuple[int, int]:
    starts = _line_starts(text)
    i = rng.randrange(len(starts))
    j = min(i + rng.randint(1, 8), len(starts))
    end = starts[j] if j < len(starts) else len(text)
    return _clip_to_line(text, starts[i], end, max_chars)


def block_span(text: str, rng: random.Random, max_chars: int) -> tuple[int, int]:
    """The indented body after a `:` / `{` line, whole lines, trailing newline included."""
    lines = text.split("\n")
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    heads = [
        i for i, line in enumerate(lines[:-1])
        if line.rstrip().endswith((":", "{")) and lines[i + 1].strip()
        and _indent(lines[i + 1]) > _indent(line)
    ]  # fmt: skip
    if not heads:
        return lines_span(text, rng, max_chars)
    head = rng.choice(heads)
    body_indent = _indent(lines[head + 1])
    last = head + 1
    for k in range(head + 1, min(len(lines), head + 40)):
        if lines[k].strip() and _indent(lines[k]) < body_indent:
            break
        if lines[k].strip():
            last = k
    start = offsets[head + 1]
    end = min(offsets[last] + len(lines[last]) + 1, len(text))
    return _clip_to_line(text, start, end, max_chars)


def _clip_to_line(text: str, start: int, end: int, max_chars: int) -> tuple[int, int]:
    """Shortens [start, end) to at most max_chars, ending after a newline when one fits."""
    if end - start <= max_chars:
        return start, end
    cut = text.rfind("\n", start, start + max_chars)
    return start, (cut + 1 if cut >= start else start + max_chars)


def choose_span(text: str, kind: str, rng: random.Random, max_chars: int = 800) -> tuple[int, int]:
    """Character offsets [a, b) of the middle for a span of `kind` (one of SPAN_KINDS)."""
    if kind not in SPAN_KINDS:
        raise ValueError(f"span kind must be one of {SPAN_KINDS}, got {kind!r}")
    if not text:
        return 0, 0
    pick = {"char": char_span, "line_rest": line_rest_span, "lines": lines_span, "block": block_span}[kind]
    a, b = pick(text, rng, max_chars)
    assert 0 <= a <= b <= len(text), (a, b, len(text))
    return a, b


# -- holes at syntax-node boundaries (training samples and the evaluation cut the same ones) --

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


def line_bounds(src: bytes, offset: int) -> tuple[int, int]:
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
        _, end = line_bounds(src, start)
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
            start = line_bounds(src, n.start_byte)[0]
            end = line_bounds(src, n.end_byte)[1] + 1
        else:
            if n.type != "statement_block":
                continue
            open_end = line_bounds(src, n.start_byte)[1]
            close_start = line_bounds(src, n.end_byte - 1)[0]
            if src[n.start_byte + 1 : open_end].strip() or src[close_start : n.end_byte - 1].strip():
                continue
            first, last = n.start_point.row + 1, n.end_point.row - 1
            start, end = open_end + 1, close_start
        if MIN_BLOCK_LINES <= last - first + 1 <= MAX_BLOCK_LINES and end <= len(src) and src[start:end].strip():
            out.append((start, min(end, len(src))))
    return out
