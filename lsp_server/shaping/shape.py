"""From raw model text to the suggestion shown in the editor.

`analyse` looks at the text around the cursor once per request (extent, stop rule, bracket
state, parse window); `shape` then cleans one candidate in a fixed order:

    stop rule → prefix repeat → suffix overlap → brackets and quotes → complete syntax
    → indentation → empty check → line endings

and `rank` orders several candidates (expert mode) by parse validity, then likelihood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepfim.context.languages import LanguageSpec
from deepfim.lsp_server.shaping.brackets import ScanState, balance, scanner_for
from deepfim.lsp_server.shaping.extent import Extent, LineLimit, decide_extent, line_limit
from deepfim.lsp_server.shaping.syntax import Window, WindowParse, check_and_truncate, parse_window, window
from deepfim.lsp_server.shaping.trim import (
    expected_indent,
    first_code_line,
    fix_indentation,
    trim_prefix_repeat,
    trim_suffix_overlap,
)

# The document text that `analyse` looks at: enough for any window, bounded for 5 MB files.
PREFIX_CHARS = 32_000
SUFFIX_CHARS = 16_000


@dataclass(frozen=True)
class ShapingContext:
    """What the shaping steps need to know about the cursor, computed once per request."""

    spec: LanguageSpec
    window: Window
    parsed: WindowParse | None  # None: no parser for the language
    line_prefix: str
    line_suffix: str
    next_line: str  # first non-blank line after the cursor's line
    extent: Extent
    limit: LineLimit
    prefix_state: ScanState
    expected_indent: int
    eol: str


def analyse(prefix: str, suffix: str, spec: LanguageSpec, max_lines: int) -> ShapingContext:
    """Inspect the cursor at the end of `prefix` (followed by `suffix`)."""
    prefix, suffix = prefix[-PREFIX_CHARS:], suffix[:SUFFIX_CHARS]
    eol = "\r\n" if "\r\n" in prefix[-2000:] or "\r\n" in suffix[:2000] else "\n"
    prefix, suffix = prefix.replace("\r\n", "\n"), suffix.replace("\r\n", "\n")
    win = window(prefix, suffix)
    line_prefix = prefix[prefix.rfind("\n") + 1 :]
    line_suffix, _, after = suffix.partition("\n")
    parsed = parse_window(win, spec)
    node_types = parsed.node_types_at_cursor() if parsed is not None else []
    extent = decide_extent(line_prefix, line_suffix, node_types, spec)
    return ShapingContext(
        spec=spec,
        window=win,
        parsed=parsed,
        line_prefix=line_prefix,
        line_suffix=line_suffix,
        next_line=first_code_line(after.split("\n", 20)[:20]),
        extent=extent,
        limit=line_limit(extent, line_prefix, suffix, max_lines, spec),
        prefix_state=scanner_for(spec).scan(win.before),
        expected_indent=expected_indent(prefix[-8000:], spec.block_openers),
        eol=eol,
    )


@dataclass(frozen=True)
class Shaped:
    text: str  # "" when suppressed
    valid: bool  # parses without adding errors
    raw: str


def shape(raw: str, ctx: ShapingContext) -> Shaped:
    """Clean one raw candidate; an empty `text` means "show nothing"."""
    text = raw.replace("\r\n", "\n")
    text = text[: ctx.limit.cut(text, final=True)]
    text = trim_prefix_repeat(text, ctx.line_prefix)
    text = trim_suffix_overlap(text, ctx.line_prefix, ctx.line_suffix, ctx.next_line)
    single = ctx.extent is not Extent.MULTI_LINE
    text = balance(text, ctx.prefix_state, ctx.line_suffix, scanner_for(ctx.spec), close_open=single)
    check = check_and_truncate(ctx.parsed, text)
    text = fix_indentation(check.text, ctx.line_prefix, ctx.expected_indent, multi_line=not single)
    if not text.strip():
        return Shaped("", False, raw)
    if ctx.eol != "\n":
        text = text.replace("\n", ctx.eol)
    return Shaped(text, check.valid, raw)


@dataclass(frozen=True)
class Ranked:
    text: str
    valid: bool
    score: float  # mean log-probability per generated token


def rank(candidates: list[tuple[Shaped, float, int]]) -> list[Ranked]:
    """Order (shaped, logprob, n_tokens) candidates: parse-valid first, then likelier per
    token; empty and duplicate texts are dropped."""
    seen: set[str] = set()
    ranked = []
    for shaped, logprob, n_tokens in candidates:
        if not shaped.text or shaped.text in seen:
            continue
        seen.add(shaped.text)
        score = logprob / max(n_tokens, 1)
        ranked.append(Ranked(shaped.text, shaped.valid, score if math.isfinite(score) else -math.inf))
    ranked.sort(key=lambda r: (not r.valid, -r.score))
    return ranked
