"""Open editor buffers, kept in sync through `didOpen`/`didChange`/`didClose`.

The server owns its buffers (instead of pygls' workspace documents) so that incremental
changes go through the tested position conversion in `positions.py` and a change only
rescans the lines it touches.

Text is repaired where it enters: a lone UTF-16 surrogate (JSON allows `"\\ud800"`; nothing
downstream can encode it) becomes U+FFFD, which has the same length in UTF-16, UTF-8 and
UTF-32, so the client's positions stay right. A buffer over `max_bytes` (the limit files on
disk have, `ContextSettings.max_file_bytes`) is still kept in sync, but hidden from
`get` and iteration: no completion runs in it and its text never reaches the context.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from deepfim.context.settings import ContextSettings
from deepfim.lsp_server import problems
from deepfim.lsp_server.positions import UTF16, LineIndex

logger = logging.getLogger(__name__)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # paired ones are one code point in Python


def clean_text(text: str) -> tuple[str, int]:
    """`text` with every lone surrogate replaced by U+FFFD, and how many there were."""
    if text.isascii():  # O(1) in CPython
        return text, 0
    return _LONE_SURROGATE.subn("\ufffd", text)


def utf8_size_over(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes in UTF-8 (encodes only when in doubt)."""
    if len(text) > limit:
        return True
    if text.isascii() or len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def uri_to_path(uri: str) -> Path | None:
    """Filesystem path for `file:` URIs, else None (untitled buffers, other schemes)."""
    fs_path = to_fs_path(uri) if uri.startswith("file:") else None
    return Path(fs_path) if fs_path else None


@dataclass
class Document:
    """One open buffer: its text, version and a line index over the text."""

    uri: str
    text: str
    version: int = 0
    language_id: str = ""
    index: LineIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = LineIndex(self.text)

    @property
    def path(self) -> Path | None:
        return uri_to_path(self.uri)

    def offset_at(self, position: types.Position, encoding: str = UTF16) -> int:
        return self.index.offset_at(self.text, position.line, position.character, encoding)

    def position_at(self, offset: int, encoding: str = UTF16) -> types.Position:
        line, character = self.index.position_at(self.text, offset, encoding)
        return types.Position(line=line, character=character)

    def apply_change(self, change: types.TextDocumentContentChangeEvent, encoding: str = UTF16) -> None:
        """Apply one incremental (range) or full-text change event."""
        if isinstance(change, types.TextDocumentContentChangePartial):
            start = self.offset_at(change.range.start, encoding)
            end = max(start, self.offset_at(change.range.end, encoding))
            self.text = self.text[:start] + change.text + self.text[end:]
            self.index.replace(self.text, start, end, len(change.text))
        else:
            self.text = change.text
            self.index = LineIndex(self.text)


class DocumentStore:
    """Open documents by URI (see the module docstring for repairs and the size limit).

    Args:
        max_bytes: buffers larger than this (in UTF-8) get no completions.
        on_problem: called with (problem kind, message) for text that was repaired and for
            buffers that cross the size limit; by default they are only logged.
    """

    def __init__(
        self, max_bytes: int = ContextSettings.max_file_bytes, on_problem: Callable[[str, str], object] | None = None
    ) -> None:
        self.max_bytes = max_bytes
        self._on_problem = on_problem or (lambda kind, message: logger.warning("%s: %s", kind, message))
        self._docs: dict[str, Document] = {}
        self._too_large: set[str] = set()

    def open(self, item: types.TextDocumentItem) -> Document:
        uri = self._uri(item.uri)
        doc = Document(uri=uri, text=self._clean(uri, item.text), version=item.version, language_id=item.language_id)
        self._docs[uri] = doc
        self._check_size(doc)
        return doc

    def change(self, params: types.DidChangeTextDocumentParams, encoding: str = UTF16) -> Document | None:
        """Apply a `didChange`; a change to a document that is not open is logged and ignored."""
        uri = self._uri(params.text_document.uri)
        doc = self._docs.get(uri)
        if doc is None:
            logger.warning("didChange for a document that is not open: %s", uri)
            return None
        for change in params.content_changes:
            change.text = self._clean(uri, change.text)
            doc.apply_change(change, encoding)
        doc.version = params.text_document.version
        self._check_size(doc)
        return doc

    def close(self, uri: str) -> Document | None:
        uri = self._uri(uri)
        self._too_large.discard(uri)
        return self._docs.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        """The open document at `uri`, unless it is over the size limit."""
        uri = self._uri(uri)
        return None if uri in self._too_large else self._docs.get(uri)

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self):
        return (doc for uri, doc in self._docs.items() if uri not in self._too_large)

    def _uri(self, uri: str) -> str:
        return clean_text(uri)[0]

    def _clean(self, uri: str, text: str) -> str:
        text, replaced = clean_text(text)
        if replaced:
            self._on_problem(problems.TEXT, f"{_name(uri)}: {replaced} lone UTF-16 surrogate(s) replaced by U+FFFD")
        return text

    def _check_size(self, doc: Document) -> None:
        over = utf8_size_over(doc.text, self.max_bytes)
        if over == (doc.uri in self._too_large):
            return
        if over:
            self._too_large.add(doc.uri)
            self._on_problem(
                problems.LARGE_DOCUMENT,
                f"{_name(doc.uri)} is over the {self.max_bytes:,}-byte limit for files: no completions in it",
            )
        else:
            self._too_large.discard(doc.uri)
            logger.info("%s is within the size limit again", doc.uri)


def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1][:80] or uri[:80]
