"""How much to complete at the cursor, and where a streamed completion must stop.

`decide_extent` picks nothing (cursor inside a word), one line (mid-line, in comments and
strings) or several lines (a fresh line, or a line that opens a block) from the text around
the cursor and the tree-sitter nodes under it (as llm-ls' `should_complete` does).

`LineLimit` is the stop rule applied while tokens stream in and again on the final text:
single-line completions end at the first newline; multi-line ones end after `max_lines`
lines or before the first line that leaves the block the cursor is in (a line indented
less than the block). In brace languages a dedented line of closers ("}") ends the block
and is kept, unless the suffix already has it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from deepfim.context.languages import LanguageSpec

CLOSING_CHARS = frozenset(")]}\"'`;,:")
SPECIAL_TOKEN_START = "<｜"  # DeepSeek special tokens: <｜fim▁hole｜>, <｜end▁of▁sentence｜>, ...
BRACKET_OPENERS = ("(", "[", "{")


class Extent(enum.Enum):
    NONE = "none"
    SINGLE_LINE = "single"
    MULTI_LINE = "multi"


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def indent_width(line: str) -> int:
    return len(line) - len(line.lstrip(" \t")) + 3 * line[: len(line) - len(line.lstrip(" \t"))].count("\t")


def opens_block(line_prefix: str, spec: LanguageSpec) -> bool:
    code = line_prefix.rstrip()
    return code.endswith(spec.block_openers) or code.endswith(BRACKET_OPENERS)


def decide_extent(line_prefix: str, line_suffix: str, node_types: list[str], spec: LanguageSpec) -> Extent:
    """Extent of the completion for a cursor between `line_prefix` and `line_suffix`.

    Args:
        line_prefix: the cursor's line up to the cursor.
        line_suffix: the cursor's line after the cursor.
        node_types: tree-sitter node types at the cursor, innermost first.
        spec: the document's language.
    """
    if line_prefix[-1:] and line_suffix[:1] and _is_word_char(line_prefix[-1]) and _is_word_char(line_suffix[0]):
        return Extent.NONE
    if any("comment" in t or "string" in t for t in node_types[:4]):
        return Extent.SINGLE_LINE
    rest = line_suffix.strip()
    if rest and not all(ch in CLOSING_CHARS or ch.isspace() for ch in rest):
        return Extent.SINGLE_LINE
    if not line_prefix.strip() or opens_block(line_prefix, spec):
        return Extent.MULTI_LINE
    return Extent.SINGLE_LINE


@dataclass(frozen=True)
class LineLimit:
    """Stop rule for one completion.

    Attributes:
        extent: single- or multi-line.
        line_prefix: the cursor's line up to the cursor.
        max_lines: most lines a multi-line completion may have.
        min_indent: lines after the first must be indented at least this much; None: the
            indentation of the completion's first line (the cursor is on a fresh line).
        keep_closing_line: a dedented line of closers ends the block and is kept.
    """

    extent: Extent
    line_prefix: str = ""
    max_lines: int = 1
    min_indent: int | None = None
    keep_closing_line: bool = False

    def cut(self, text: str, final: bool = False) -> int | None:
        """Index where `text` must end, or None while it may still grow.

        With `final`, the text is complete: its last line is judged too, and the answer is
        never None. A special-token string (``<｜...｜>``) or an undecodable byte (U+FFFD)
        always ends the completion.
        """
        special = min((i for i in (text.find(SPECIAL_TOKEN_START), text.find("\ufffd")) if i >= 0), default=-1)
        if special >= 0:
            cut = self._cut(text[:special], final=True)
            return special if cut is None else min(cut, special)
        return self._cut(text, final)

    def _cut(self, text: str, final: bool) -> int | None:
        if self.extent is not Extent.MULTI_LINE:
            newline = text.find("\n")
            return newline if newline >= 0 else (len(text) if final else None)
        lines = text.split("\n")
        min_indent = self.min_indent
        if min_indent is None and (self.line_prefix + lines[0]).strip():
            min_indent = indent_width(self.line_prefix + lines[0])
        newline_at = len(lines[0])  # index of the "\n" before line k
        for k in range(1, len(lines)):
            line = lines[k]
            complete = k < len(lines) - 1 or final
            if k >= self.max_lines:
                return newline_at
            stripped = line.strip()
            if stripped:
                if min_indent is None:
                    min_indent = indent_width(line)
                elif indent_width(line) < min_indent:
                    if self.keep_closing_line and all(ch in ")]};," for ch in stripped):
                        if not complete:
                            return None
                        return newline_at + 1 + len(line)
                    return newline_at
            newline_at += 1 + len(line)
        return len(text) if final else None


def line_limit(extent: Extent, line_prefix: str, suffix: str, max_lines: int, spec: LanguageSpec) -> LineLimit:
    """The stop rule for a completion at the cursor (`suffix` is all text after it)."""
    if extent is not Extent.MULTI_LINE:
        return LineLimit(extent, line_prefix)
    if line_prefix.strip() and opens_block(line_prefix, spec):
        next_line = next((ln for ln in suffix.split("\n") if ln.strip()), "")
        return LineLimit(
            extent,
            line_prefix,
            max_lines,
            min_indent=indent_width(line_prefix) + 1,
            keep_closing_line=not next_line.lstrip().startswith((")", "]", "}")),
        )
    return LineLimit(extent, line_prefix, max_lines)
