"""LSP positions ⇄ Python string indices.

LSP counts `Position.character` in UTF-16 code units unless client and server negotiated
UTF-8 bytes or UTF-32 code points (`positionEncoding`); Python strings index code points.
An emoji such as "😀" is one Python character, two UTF-16 units and four UTF-8 bytes.
Lines end at "\\n", "\\r\\n" or a lone "\\r" — and at nothing else, unlike `str.splitlines`,
which also splits at form feeds, U+2028 and friends.

`LineIndex` keeps the start offset of every line and is updated in place of a full rescan
when an edit only touches a few lines, so a keystroke in a 5 MB buffer stays cheap.
"""

from __future__ import annotations

import re

import numpy as np

UTF16 = "utf-16"
UTF8 = "utf-8"
UTF32 = "utf-32"
ENCODINGS = (UTF16, UTF8, UTF32)

LINE_BREAK = re.compile(r"\r\n|\r|\n")


def code_units(char: str, encoding: str = UTF16) -> int:
    """Width of one character in the given position encoding."""
    cp = ord(char)
    if encoding == UTF16:
        return 2 if cp > 0xFFFF else 1
    if encoding == UTF8:
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 1


def text_units(text: str, encoding: str = UTF16) -> int:
    """Length of `text` in the given position encoding."""
    if text.isascii():
        return len(text)
    if encoding == UTF16:
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text)


def column_to_index(line: str, character: int, encoding: str = UTF16) -> int:
    """Index into `line` (without its terminator) of an LSP `character` offset.

    A column past the end of the line means the end of the line (as LSP specifies); a column
    that falls inside a character (half a surrogate pair) rounds down to that character.
    """
    if character <= 0:
        return 0
    if encoding == UTF32 or line.isascii():
        return min(character, len(line))
    units = 0
    for index, ch in enumerate(line):
        units += code_units(ch, encoding)
        if units > character:
            return index
        if units == character:
            return index + 1
    return len(line)


def index_to_column(line: str, index: int, encoding: str = UTF16) -> int:
    """LSP `character` offset of the string index `index` in `line`."""
    index = max(0, min(index, len(line)))
    if encoding == UTF32:
        return index
    return text_units(line[:index], encoding)


def _line_starts(text: str, base: int = 0) -> list[int]:
    return [base + m.end() for m in LINE_BREAK.finditer(text)]


class LineIndex:
    """Start offsets of the lines of one text; line 0 starts at offset 0.

    A text ending with a line break has an empty last line after it, as in LSP.
    """

    def __init__(self, text: str) -> None:
        self._starts = np.asarray([0, *_line_starts(text)], dtype=np.int64)
        self._length = len(text)

    @property
    def line_count(self) -> int:
        return len(self._starts)

    def line_start(self, line: int) -> int:
        return int(self._starts[line])

    def line_of(self, offset: int) -> int:
        """The line holding `offset` (offsets inside a line terminator belong to its line)."""
        return int(np.searchsorted(self._starts, offset, side="right")) - 1

    def line_text(self, text: str, line: int) -> str:
        """The text of `line` without its terminator."""
        start = self.line_start(line)
        end = self.line_start(line + 1) if line + 1 < self.line_count else len(text)
        segment = text[start:end]
        if segment.endswith("\r\n"):
            return segment[:-2]
        if segment.endswith(("\n", "\r")):
            return segment[:-1]
        return segment

    def offset_at(self, text: str, line: int, character: int, encoding: str = UTF16) -> int:
        """String offset of an LSP position; positions past the end clamp to the end."""
        if line < 0:
            return 0
        if line >= self.line_count:
            return len(text)
        return self.line_start(line) + column_to_index(self.line_text(text, line), character, encoding)

    def position_at(self, text: str, offset: int, encoding: str = UTF16) -> tuple[int, int]:
        """LSP (line, character) of a string offset."""
        offset = max(0, min(offset, len(text)))
        line = self.line_of(offset)
        line_text = self.line_text(text, line)
        return line, index_to_column(line_text, offset - self.line_start(line), encoding)

    def replace(self, new_text: str, start: int, end: int, inserted: int) -> None:
        """Update after `[start, end)` of the old text was replaced by `inserted` characters.

        Only the lines around the edit are rescanned: from the start of the line before
        `start` (an inserted "\\n" may join a "\\r" before it into one "\\r\\n") to the start
        of the line after `end`, which stays a line start because everything from `end` on
        is unchanged. Starts after it shift by the length difference.
        """
        assert 0 <= start <= end <= self._length, (start, end, self._length)
        delta = inserted - (end - start)
        starts = self._starts
        first = self.line_of(start)
        last = self.line_of(end)
        keep = starts[: max(first, 1)]
        scan_from = int(keep[-1])
        after = starts[last + 1 :] + delta
        if len(after):
            scan_to = int(after[0])
            middle = [s for s in _line_starts(new_text[scan_from:scan_to], scan_from) if s < scan_to]
        else:
            middle = _line_starts(new_text[scan_from:], scan_from)
        self._starts = np.concatenate([keep, np.asarray(middle, dtype=np.int64), after])
        self._length = len(new_text)
