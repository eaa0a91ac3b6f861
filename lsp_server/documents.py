"""Open editor buffers, kept in sync through `didOpen`/`didChange`/`didClose`.

The server owns its buffers (instead of pygls' workspace documents) so that incremental
changes go through the tested position conversion in `positions.py` and a change only
rescans the lines it touches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from deepfim.lsp_server.positions import UTF16, LineIndex

logger = logging.getLogger(__name__)


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
    """Open documents by URI."""

    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def open(self, item: types.TextDocumentItem) -> Document:
        doc = Document(uri=item.uri, text=item.text, version=item.version, language_id=item.language_id)
        self._docs[item.uri] = doc
        return doc

    def change(self, params: types.DidChangeTextDocumentParams, encoding: str = UTF16) -> Document | None:
        """Apply a `didChange`; a change to a document that is not open is logged and ignored."""
        doc = self._docs.get(params.text_document.uri)
        if doc is None:
            logger.warning("didChange for a document that is not open: %s", params.text_document.uri)
            return None
        for change in params.content_changes:
            doc.apply_change(change, encoding)
        doc.version = params.text_document.version
        return doc

    def close(self, uri: str) -> Document | None:
        return self._docs.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self):
        return iter(self._docs.values())
