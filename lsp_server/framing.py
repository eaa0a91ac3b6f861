"""LSP base-protocol framing (`Content-Length: N\\r\\n ... \\r\\n\\r\\n` + N bytes), bounded and
self-resynchronizing.

`FrameReader` is a pure state machine: bytes go in (`feed`), complete message bodies and
framing problems come out. It never trusts a header with memory or with the stream's sync:

- a declared length over `max_body` is refused without allocating it: the reader skips ahead
  to the next `Content-Length:` header (the body in between is discarded, however long);
- bytes that are not a header (junk, a malformed header such as `Content-Length: abc`, the
  rest of a body whose length was declared too short) are skipped up to the next header;
- a body whose declared length is too long ends where the next header begins.

Resynchronizing on a header is safe because a valid JSON body can never contain
`Content-Length: <digits>` followed by a line break: raw CR/LF may not appear inside a JSON
string and the text is not JSON outside one. Memory is bounded by `max_body` plus one read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BODY_BYTES = 64 << 20  # far above any sane message; a 10 MB didOpen still gets through
MAX_HEADER_BYTES = 8192  # one header block (Content-Length, Content-Type, ...)
_TAIL = 64  # longer than any Content-Length line: where a header may hide at a body's end

_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*(\d{1,20})[ \t]*\r?\n", re.IGNORECASE)
_OTHER_HEADER = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_-]*[ \t]*:[^\r\n]*\r?\n")
_BLANK_LINE = re.compile(rb"[ \t]*\r?\n")
_HEADER_LINES_AT_END = re.compile(rb"(?:[A-Za-z0-9][A-Za-z0-9_-]*[ \t]*:[^\r\n]*\r?\n)+\Z")
# the start of a header cut off by the end of a body whose declared length was a little too long
_PARTIAL_HEADER_AT_END = re.compile(
    rb"(?:content-length[ \t]*(?::[ \t]*(?:\d{1,20}[ \t]*\r?)?)?"
    rb"|c(?:o(?:n(?:t(?:e(?:n(?:t(?:-(?:l(?:e(?:n(?:g(?:t)?)?)?)?)?)?)?)?)?)?)?)?)\Z",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Frame:
    """One message body; `declared` is the Content-Length the header promised."""

    body: bytes
    declared: int


@dataclass(frozen=True)
class FramingProblem:
    """Bytes the reader could not use. `kind`: "oversize", "bad-header" or "junk"."""

    kind: str
    detail: str


class FrameReader:
    """Incremental parser of the LSP base protocol (see the module docstring)."""

    def __init__(self, max_body: int = MAX_BODY_BYTES, max_header: int = MAX_HEADER_BYTES) -> None:
        self.max_body = max_body
        self.max_header = max_header
        self._buf = bytearray()
        self._length: int | None = None  # set once a header block is complete: reading the body
        self._scanned = 0  # body bytes already searched for a following header
        self._skipping = False  # after an oversize header: what follows is its body, not junk
        self._junk = 0  # bytes skipped since the last message
        self._junk_preview = b""

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a header or body."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FramingProblem]:
        """Frames and problems completed by `data`, in stream order."""
        self._buf += data
        out: list[Frame | FramingProblem] = []
        while self._step(out):
            pass
        return out

    def close(self) -> list[FramingProblem]:
        """At end of stream: whatever was left over, as problems."""
        out: list[FramingProblem] = []
        if self._length is not None:
            out.append(FramingProblem("junk", f"stream ended {self._length - len(self._buf)} bytes into a body"))
        else:
            self._skip(len(self._buf))
            self._flush_junk(out)
        self._buf.clear()
        return out

    # states -------------------------------------------------------------------------------

    def _step(self, out: list) -> bool:
        """Advances one state transition; False when more input is needed."""
        if self._length is not None:
            return self._read_body(out)
        match = _CONTENT_LENGTH.search(self._buf)
        if match is None:  # keep what may be the start of a header block (Content-Type first)
            self._skip(max(0, len(self._buf) - self.max_header))
            return False
        length = int(match.group(1))  # (read before the buffer changes under the match)
        line_end = match.end() - match.start()  # the Content-Length line now starts the buffer
        self._skip_before_header(match.start())
        end = self._header_end(line_end)
        if end is None:
            return False  # header block incomplete: wait (the Content-Length line stays buffered)
        if end < 0:  # a line that is no header: drop this Content-Length and seek again
            self._skip(line_end)
            return True
        self._flush_junk(out)
        self._drop(end)
        if length > self.max_body:
            out.append(FramingProblem("oversize", f"Content-Length {length} exceeds the {self.max_body}-byte limit"))
            self._skipping = True
            return True
        self._skipping = False
        self._length, self._scanned = length, 0
        return True

    def _header_end(self, pos: int) -> int | None:
        """Offset after the blank line ending the header block that continues at `pos`;
        None when incomplete, -1 when a line in it is not a header."""
        while True:
            if pos >= len(self._buf):
                return None if len(self._buf) <= self.max_header else -1
            blank = _BLANK_LINE.match(self._buf, pos)
            if blank is not None:
                return blank.end()
            other = _OTHER_HEADER.match(self._buf, pos)
            if other is None:
                newline = self._buf.find(b"\n", pos)
                if newline < 0 and len(self._buf) - pos <= self.max_header:
                    return None
                return -1
            if _CONTENT_LENGTH.match(self._buf, pos):
                return -1  # a second Content-Length: the first header block had no body
            pos = other.end()

    def _read_body(self, out: list) -> bool:
        length = self._length
        assert length is not None
        # A header inside the declared body means the length was too long: the body ends there.
        start = max(0, self._scanned - _TAIL)
        limit = min(len(self._buf), length + _TAIL)
        match = _CONTENT_LENGTH.search(self._buf, start, limit)
        if match is not None and match.start() < length:
            return self._emit(match.start(), out)
        self._scanned = limit
        if len(self._buf) < length:
            return False
        # ... or the next header begins in its last bytes (it cannot be completed yet, and
        # waiting for it could wait forever: the client may be waiting for our answer)
        tail_start = max(0, length - _TAIL)
        partial = _PARTIAL_HEADER_AT_END.search(bytes(self._buf[tail_start:length]))
        return self._emit(tail_start + partial.start() if partial else length, out)

    def _emit(self, end: int, out: list) -> bool:
        if end < self._length:
            out.append(FramingProblem("bad-length", f"Content-Length {self._length}, but the next header "
                                                    f"starts after {end} bytes"))  # fmt: skip
        out.append(Frame(bytes(self._buf[:end]), self._length))
        self._drop(end)
        self._length = None
        return True

    # bookkeeping ---------------------------------------------------------------------------

    def _drop(self, n: int) -> None:
        del self._buf[:n]

    def _skip(self, n: int) -> None:
        """Discards `n` leading bytes; what is not whitespace counts as junk."""
        if n <= 0:
            return
        skipped = bytes(self._buf[:n])
        self._drop(n)
        if self._skipping:
            return  # the body of an oversize message: already reported
        stripped = skipped.strip()
        if stripped:
            self._junk += len(skipped)
            if len(self._junk_preview) < 60:
                self._junk_preview += stripped[: 60 - len(self._junk_preview)]

    def _skip_before_header(self, n: int) -> None:
        """Skips the `n` bytes before a Content-Length line, except the header lines just
        before it (a client may send Content-Type first)."""
        headers = _HEADER_LINES_AT_END.search(bytes(self._buf[max(0, n - self.max_header) : n]))
        keep = len(headers.group(0)) if headers else 0
        self._skip(n - keep)
        self._drop(keep)

    def _flush_junk(self, out: list) -> None:
        if self._junk:
            kind = "bad-header" if b"content-length" in self._junk_preview.lower() else "junk"
            out.append(FramingProblem(kind, f"skipped {self._junk} bytes that were no message: {self._junk_preview!r}"))
        self._junk, self._junk_preview = 0, b""
