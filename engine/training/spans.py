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

SPAN_KINDS = ("char", "line_rest", "lines", "block")
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
