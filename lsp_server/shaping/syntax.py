"""Tree-sitter checks for completions: where the cursor is, and whether prefix + completion
+ suffix parses — cutting the completion back to its last complete syntax node if not.

Parsing uses a window around the cursor (from the last top-level line before it to the next
top-level line after it), so the cost does not grow with the file. Errors are compared with
the window *without* the completion: code being typed is often broken already, and a
completion only has to not make it worse.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from tree_sitter import Node, Parser
from tree_sitter_language_pack import get_parser

from deepfim.lsp_server.shaping.languages import LanguageSpec

logger = logging.getLogger(__name__)

MAX_WINDOW_LINES_BEFORE = 150
MAX_WINDOW_LINES_AFTER = 60
MAX_CUT_CANDIDATES = 12
_CLOSING_START = (")", "]", "}")


@functools.cache
def parser_for(grammar: str) -> Parser | None:
    try:
        return get_parser(grammar)  # type: ignore[arg-type]
    except Exception as exc:  # a missing grammar must not break completion
        logger.warning("no tree-sitter parser for %s: %s", grammar, exc)
        return None


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


def parse(text: str, grammar: str):
    parser = parser_for(grammar)
    return parser.parse(text.encode("utf-8")) if parser else None


def errors_in(text: str, grammar: str) -> int:
    tree = parse(text, grammar)
    return count_errors(tree.root_node) if tree else 0


def node_types_at(win: Window, grammar: str) -> list[str]:
    """Types of the nodes containing the cursor, innermost first (empty without a parser)."""
    tree = parse(win.before + win.after, grammar)
    if tree is None:
        return []
    offset = len(win.before.encode("utf-8"))
    node = tree.root_node.descendant_for_byte_range(max(offset - 1, 0), offset)
    types = []
    while node is not None:
        types.append(node.type)
        node = node.parent
    return types


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


def _leaf_cuts(win: Window, completion: str, grammar: str) -> list[int]:
    """Completion offsets where a leaf token ends, longest first."""
    tree = parse(win.before + completion + win.after, grammar)
    if tree is None:
        return []
    text = (win.before + completion).encode("utf-8")
    lo, hi = len(win.before.encode("utf-8")), len(text)
    ends: set[int] = set()
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.end_byte <= lo or node.start_byte >= hi:
            continue
        if node.child_count == 0:
            if lo < node.end_byte < hi:
                ends.add(len(text[lo : node.end_byte].decode("utf-8", "ignore")))
        else:
            stack.extend(node.children)
    return sorted(ends, reverse=True)


def check_and_truncate(win: Window, completion: str, spec: LanguageSpec) -> SyntaxCheck:
    """Cut `completion` back to the longest prefix that parses with the fewest errors.

    Tries the whole completion, then whole lines (longest first), else token ends, and stops
    at the first that parses cleanly. A cut is only taken if it has fewer errors than the
    whole completion. `valid` compares with the window without any completion.
    """
    if spec.grammar is None or parser_for(spec.grammar) is None:
        return SyntaxCheck(completion, True, 0)
    grammar = spec.grammar
    baseline = errors_in(win.before + win.after, grammar)
    best = SyntaxCheck(completion, False, errors_in(win.before + completion + win.after, grammar))
    if best.errors:
        for cut in (_line_cuts(completion) or _leaf_cuts(win, completion, grammar))[:MAX_CUT_CANDIDATES]:
            text = completion[:cut].rstrip(" \t")
            if not text.strip():
                continue
            errors = errors_in(win.before + text + win.after, grammar)
            if errors < best.errors:
                best = SyntaxCheck(text, False, errors)
                if errors == 0:
                    break
    return SyntaxCheck(best.text, best.errors <= baseline, best.errors)
