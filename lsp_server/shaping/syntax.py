"""Tree-sitter checks for completions: where the cursor is, and whether prefix + completion
+ suffix parses — cutting the completion back to its last complete syntax node if not.

Parsing uses a window around the cursor (from the last top-level line before it to the next
top-level line after it), so the cost does not grow with the file. Errors are compared with
the window *without* the completion: code being typed is often broken already, and a
completion only has to not make it worse.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tree_sitter import Node, Parser

from deepfim.context.languages import LanguageSpec, parser_or_none

logger = logging.getLogger(__name__)

MAX_WINDOW_LINES_BEFORE = 150
MAX_WINDOW_LINES_AFTER = 60
MAX_CUT_CANDIDATES = 12
_CLOSING_START = (")", "]", "}")


def _is_top_level(line: str) -> bool:
    return bool(line) and not line[0].isspace() and not line.startswith(_CLOSING_START)


@dataclass(frozen=True)
class Window:
    """The text around the cursor that is parsed: `before` ends at the cursor."""

    before: str
    after: str


def _window_start(prefix: str) -> int:
    start = prefix.rfind("\n") + 1  # the cursor's line
    for _ in range(MAX_WINDOW_LINES_BEFORE):
        if start == 0:
            break
        line_end = prefix.find("\n", start)
        if _is_top_level(prefix[start : line_end if line_end >= 0 else len(prefix)]):
            break
        start = prefix.rfind("\n", 0, start - 1) + 1
    return start


def _window_end(suffix: str) -> int:
    end = suffix.find("\n")  # the rest of the cursor's line is always in
    for _ in range(MAX_WINDOW_LINES_AFTER):
        if end < 0:
            return len(suffix)
        nxt = suffix.find("\n", end + 1)
        if _is_top_level(suffix[end + 1 : nxt if nxt >= 0 else len(suffix)]):
            return end
        end = nxt
    return end if end >= 0 else len(suffix)


def window(prefix: str, suffix: str) -> Window:
    """The cursor's top-level region: back to a top-level line, forward to the next one."""
    return Window(prefix[_window_start(prefix) :], suffix[: _window_end(suffix)])


def count_errors(node: Node) -> int:
    """ERROR and MISSING nodes under `node` (subtrees without errors are skipped)."""
    if not node.has_error and not node.is_missing:
        return 0
    if node.is_error or node.is_missing:
        return 1 + sum(count_errors(child) for child in node.children if child.has_error)
    return sum(count_errors(child) for child in node.children)


def errors_in(text: str, spec: LanguageSpec) -> int:
    """Syntax errors in a whole text (0 without a parser)."""
    parser = parser_or_none(spec)
    return count_errors(parser.parse(text.encode("utf-8")).root_node) if parser else 0


def _point_after(start: tuple[int, int], data: bytes) -> tuple[int, int]:
    lines = data.count(b"\n")
    if not lines:
        return start[0], start[1] + len(data)
    return start[0] + lines, len(data) - data.rfind(b"\n") - 1


class WindowParse:
    """The window parsed once; text inserted at the cursor is then parsed incrementally,
    reusing the unchanged parts of the tree (a fraction of a full parse)."""

    def __init__(self, win: Window, parser: Parser) -> None:
        self._parser = parser
        self._before = win.before.encode("utf-8")
        self._after = win.after.encode("utf-8")
        self._cursor = _point_after((0, 0), self._before)
        self.tree = parser.parse(self._before + self._after)
        self.baseline_errors = count_errors(self.tree.root_node)

    def node_types_at_cursor(self) -> list[str]:
        """Types of the nodes containing the cursor, innermost first."""
        offset = len(self._before)
        node = self.tree.root_node.descendant_for_byte_range(max(offset - 1, 0), offset)
        types = []
        while node is not None:
            types.append(node.type)
            node = node.parent
        return types

    def with_insert(self, text: str):
        """The tree of the window with `text` inserted at the cursor."""
        data = text.encode("utf-8")
        tree = self.tree.copy()
        start = len(self._before)
        tree.edit(
            start_byte=start,
            old_end_byte=start,
            new_end_byte=start + len(data),
            start_point=self._cursor,
            old_end_point=self._cursor,
            new_end_point=_point_after(self._cursor, data),
        )
        return self._parser.parse(self._before + data + self._after, tree)

    def errors_with(self, text: str) -> int:
        return count_errors(self.with_insert(text).root_node)

    def leaf_ends(self, text: str) -> list[int]:
        """Offsets into `text` (inserted at the cursor) where a leaf token ends, longest first."""
        data = text.encode("utf-8")
        lo, hi = len(self._before), len(self._before) + len(data)
        ends: set[int] = set()
        stack = [self.with_insert(text).root_node]
        while stack:
            node = stack.pop()
            if node.end_byte <= lo or node.start_byte >= hi:
                continue
            if node.child_count == 0:
                if lo < node.end_byte < hi:
                    ends.add(len(data[: node.end_byte - lo].decode("utf-8", "ignore")))
            else:
                stack.extend(node.children)
        return sorted(ends, reverse=True)


def parse_window(win: Window, spec: LanguageSpec) -> WindowParse | None:
    """The window's parse for `spec`, or None when the language has no parser."""
    parser = parser_or_none(spec)
    return WindowParse(win, parser) if parser is not None else None


@dataclass(frozen=True)
class SyntaxCheck:
    text: str
    valid: bool  # parses with no more errors than the window had without the completion
    errors: int


def _line_cuts(completion: str) -> list[int]:
    """Ends of whole lines inside the completion, longest first."""
    cuts, pos = [], completion.rfind("\n")
    while pos > 0:
        cuts.append(pos)
        pos = completion.rfind("\n", 0, pos)
    return cuts


def check_and_truncate(parsed: WindowParse | None, completion: str) -> SyntaxCheck:
    """Cut `completion` back to the longest prefix that parses with the fewest errors.

    Tries the whole completion, then whole lines (longest first), else token ends, and stops
    at the first that parses cleanly. A cut is only taken if it has fewer errors than the
    whole completion. `valid` compares with the window without any completion.
    """
    if parsed is None:
        return SyntaxCheck(completion, True, 0)
    best = SyntaxCheck(completion, False, parsed.errors_with(completion))
    if best.errors:
        for cut in (_line_cuts(completion) or parsed.leaf_ends(completion))[:MAX_CUT_CANDIDATES]:
            text = completion[:cut].rstrip(" \t")
            if not text.strip():
                continue
            errors = parsed.errors_with(text)
            if errors < best.errors:
                best = SyntaxCheck(text, False, errors)
                if errors == 0:
                    break
    return SyntaxCheck(best.text, best.errors <= parsed.baseline_errors, best.errors)
