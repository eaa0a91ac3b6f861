"""Brackets and quotes across prefix, completion and suffix.

A small lexer tracks open brackets and strings (skipping comments and escapes) so that a
completion can be balanced against the text around the cursor:

- a closer in the completion for a bracket or string the *prefix* opened, which the suffix's
  line closes already, would close it twice: the completion is cut before it
  (`foo(a, |)` + "b) + 1" → "b");
- brackets and strings the completion opens itself and leaves open are closed at its end
  (single-line completions only: multi-line ones are cut to complete syntax instead).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from deepfim.context.languages import LanguageSpec

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {")": "(", "]": "[", "}": "{"}


@dataclass
class ScanState:
    """Open brackets and strings (innermost last) and whether we are inside a comment."""

    stack: list[str] = field(default_factory=list)
    comment: str | None = None  # None, "line" or "block"

    def copy(self) -> ScanState:
        return ScanState(list(self.stack), self.comment)

    @property
    def depth(self) -> int:
        return len(self.stack)


@dataclass(frozen=True)
class Event:
    start: int
    token: str
    kind: str  # "open" | "close"


def _is_quote(token: str) -> bool:
    return token not in OPENERS and token not in CLOSERS


def _multiline(quote: str) -> bool:
    return len(quote) == 3 or quote == "`"


class BracketScanner:
    """Lexes bracket and string structure for one language."""

    def __init__(self, spec: LanguageSpec) -> None:
        self.spec = spec
        tokens = [*spec.quotes, *spec.line_comments, *OPENERS, *CLOSERS]
        if spec.block_comment:
            tokens.append(spec.block_comment[0])
        self._code = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))
        self._in_quote = {
            q: re.compile(r"\\.|" + re.escape(q) + ("" if _multiline(q) else r"|\n"), re.S) for q in spec.quotes
        }
        self._block_end = re.compile(re.escape(spec.block_comment[1])) if spec.block_comment else None

    def events(self, text: str, state: ScanState) -> Iterator[Event]:
        """Yields each bracket/string event *before* applying it to `state`.

        Stop iterating to leave `state` just before an event; exhaust to scan all of `text`.
        """
        pos = 0
        while pos < len(text):
            if state.comment == "line":
                end = text.find("\n", pos)
                if end < 0:
                    return
                state.comment, pos = None, end + 1
                continue
            if state.comment == "block":
                assert self._block_end is not None
                match = self._block_end.search(text, pos)
                if match is None:
                    return
                state.comment, pos = None, match.end()
                continue
            top = state.stack[-1] if state.stack else None
            if top is not None and _is_quote(top):
                match = self._in_quote[top].search(text, pos)
                if match is None:
                    return
                pos = match.end()
                if match.group() == top or match.group() == "\n":
                    yield Event(match.start(), match.group(), "close")
                    state.stack.pop()
                continue
            match = self._code.search(text, pos)
            if match is None:
                return
            token, pos = match.group(), match.end()
            if token in self.spec.line_comments:
                state.comment = "line"
            elif self.spec.block_comment and token == self.spec.block_comment[0]:
                state.comment = "block"
            elif token in CLOSERS:
                yield Event(match.start(), token, "close")
                opener = CLOSERS[token]
                if opener in state.stack:  # recover from a mismatch by popping down to the opener
                    del state.stack[len(state.stack) - 1 - state.stack[::-1].index(opener) :]
            else:
                yield Event(match.start(), token, "open")
                state.stack.append(token)

    def scan(self, text: str, state: ScanState | None = None) -> ScanState:
        """The state after all of `text`, starting from `state` (copied) or from nothing."""
        state = state.copy() if state else ScanState()
        for _ in self.events(text, state):
            pass
        return state

    def closes(self, text: str, state: ScanState) -> int:
        """How many of the brackets/strings open in `state` the `text` closes."""
        work = state.copy()
        lowest = work.depth
        for _ in self.events(text, work):
            lowest = min(lowest, work.depth)
        return state.depth - min(lowest, work.depth)


@functools.lru_cache(maxsize=64)
def scanner_for(spec: LanguageSpec) -> BracketScanner:
    return BracketScanner(spec)


def closer_for(token: str) -> str:
    return OPENERS.get(token, token)


def balance(
    completion: str, prefix_state: ScanState, suffix_line: str, scanner: BracketScanner, close_open: bool
) -> str:
    """Balance `completion` against the open brackets of the prefix and the suffix's line.

    Args:
        completion: text to insert at the cursor.
        prefix_state: scan state at the cursor.
        suffix_line: the rest of the cursor's line after the cursor.
        scanner: lexer for the document's language.
        close_open: append closers for brackets/strings the completion leaves open.
    """
    closed_by_suffix = scanner.closes(suffix_line, prefix_state)
    state = prefix_state.copy()
    prefix_open = state.depth  # prefix brackets still open at this point of the completion
    closed_prefix = 0
    for event in scanner.events(completion, state):
        if event.kind != "close" or state.depth > prefix_open:
            continue
        if closed_prefix < closed_by_suffix:
            return completion[: event.start].rstrip(" \t")
        closed_prefix += 1
        prefix_open -= 1
    if not close_open or state.comment is not None:
        return completion
    own = state.stack[prefix_open:]
    return completion + "".join(closer_for(token) for token in reversed(own))
