"""Typing-through: serve the rest of the current suggestion without a model call.

When the user types the first characters of the suggestion on screen, the next request
finds the document unchanged except for those characters before the cursor; the rest of
the suggestion is still right. One entry per document, anchored where the suggestion was
made, so backspacing over characters typed since then is served too.
"""

from __future__ import annotations

from dataclasses import dataclass

ANCHOR_CHARS = 256  # prefix tail / suffix head compared to recognise the same document


@dataclass(frozen=True)
class _Entry:
    suggestion_id: str
    text: str
    prefix_len: int
    prefix_tail: str
    suffix_len: int
    suffix_head: str


@dataclass(frozen=True)
class Hit:
    suggestion_id: str
    remaining: str


class TypingCache:
    """Last suggestion per document URI."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self.hits = 0
        self.misses = 0

    def store(self, uri: str, prefix: str, suffix: str, text: str, suggestion_id: str) -> None:
        self._entries[uri] = _Entry(
            suggestion_id, text, len(prefix), prefix[-ANCHOR_CHARS:], len(suffix), suffix[:ANCHOR_CHARS]
        )

    def forget(self, uri: str) -> None:
        self._entries.pop(uri, None)

    def lookup(self, uri: str, prefix: str, suffix: str) -> Hit | None:
        """The rest of the stored suggestion if `prefix` is its anchor plus typed characters
        the suggestion starts with, and the suffix is unchanged."""
        hit = self._match(uri, prefix, suffix)
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
        return hit

    def _match(self, uri: str, prefix: str, suffix: str) -> Hit | None:
        entry = self._entries.get(uri)
        if entry is None or len(prefix) < entry.prefix_len:
            return None
        if len(suffix) != entry.suffix_len or not suffix.startswith(entry.suffix_head):
            return None
        if prefix[entry.prefix_len - len(entry.prefix_tail) : entry.prefix_len] != entry.prefix_tail:
            return None
        typed = prefix[entry.prefix_len :]
        if len(typed) >= len(entry.text) or not entry.text.startswith(typed):
            return None
        return Hit(entry.suggestion_id, entry.text[len(typed) :])

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {
            "entries": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / total, 3) if total else 0.0,
        }
