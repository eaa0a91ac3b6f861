"""Typing-through: serve the rest of the current suggestion without a model call.

When the user types the first characters of the suggestion on screen, the next request
finds the document unchanged except for those characters before the cursor; the rest of
the suggestion is still right. One entry per document, anchored where the suggestion was
made, so backspacing over characters typed since then is served too.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfim.lsp_server.runs import Anchor


@dataclass(frozen=True)
class _Entry:
    suggestion_id: str
    text: str
    anchor: Anchor


@dataclass(frozen=True)
class Hit:
    suggestion_id: str
    remaining: str


def rest_after(text: str, typed: str) -> str | None:
    """What is left of suggestion `text` once `typed` was typed; None if it does not match
    or nothing is left."""
    if len(typed) >= len(text) or not text.startswith(typed):
        return None
    return text[len(typed) :]


class TypingCache:
    """Last suggestion per document URI."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self.hits = 0
        self.misses = 0

    def store(self, uri: str, anchor: Anchor, text: str, suggestion_id: str) -> None:
        self._entries[uri] = _Entry(suggestion_id, text, anchor)

    def extend(self, uri: str, suggestion_id: str, text: str) -> bool:
        """Lets suggestion `suggestion_id` go on as `text` (it was shown before its end), if it is
        still the document's and `text` starts with it."""
        entry = self._entries.get(uri)
        if entry is None or entry.suggestion_id != suggestion_id or not text.startswith(entry.text):
            return False
        self._entries[uri] = _Entry(suggestion_id, text, entry.anchor)
        return True

    def forget(self, uri: str) -> None:
        self._entries.pop(uri, None)

    def lookup(self, uri: str, prefix: str, suffix: str) -> Hit | None:
        """The rest of the stored suggestion if `prefix` is its anchor plus typed characters
        the suggestion starts with, and the suffix is unchanged."""
        entry = self._entries.get(uri)
        typed = entry.anchor.typed_since(prefix, suffix) if entry is not None else None
        remaining = rest_after(entry.text, typed) if entry is not None and typed is not None else None
        if remaining is None:
            self.misses += 1
            return None
        self.hits += 1
        return Hit(entry.suggestion_id, remaining)

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {
            "entries": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / total, 3) if total else 0.0,
        }
