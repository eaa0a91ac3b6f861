"""Incremental re-parsing: the last tree of recently parsed files, reused after an edit.

Typing in a buffer or saving a file re-parses the same file again and again. Tree-sitter
can reuse an old tree when told where the text changed: we find the changed byte range as
the longest common prefix and suffix of the old and new bytes, `Tree.edit` it, and parse
with the old tree, which costs about the size of the change rather than of the file.

`Tree.edit` mutates the tree, so a cached tree is *taken* out of the cache while in use and
the new tree put back afterwards: two threads never share one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from tree_sitter import Parser, Tree

CAPACITY = 16
_CHUNK = 4096


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i : i + _CHUNK] == b[i : i + _CHUNK]:
        i += _CHUNK
    # inside the first chunk that differs: halve it (a byte loop here took ~1 ms a parse)
    lo, hi = min(i, n), min(i + _CHUNK, n)  # a[:lo] == b[:lo]; they differ before hi, or hi == n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common suffix, at most `limit` (so it does not overlap the prefix)."""
    n = 0
    while n + _CHUNK <= limit and a[len(a) - n - _CHUNK : len(a) - n] == b[len(b) - n - _CHUNK : len(b) - n]:
        n += _CHUNK
    lo, hi = n, min(n + _CHUNK, limit)  # the last lo bytes are equal; at most hi are
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _point(data: bytes, offset: int) -> tuple[int, int]:
    return data.count(b"\n", 0, offset), offset - (data.rfind(b"\n", 0, offset) + 1)


def reparse(parser: Parser, old_data: bytes, old_tree: Tree, data: bytes) -> Tree:
    """Parses `data` reusing `old_tree` (the tree of `old_data`), which it edits."""
    start = _common_prefix(old_data, data)
    tail = _common_suffix(old_data, data, min(len(old_data), len(data)) - start)
    old_end, new_end = len(old_data) - tail, len(data) - tail
    old_tree.edit(
        start_byte=start,
        old_end_byte=old_end,
        new_end_byte=new_end,
        start_point=_point(old_data, start),
        old_end_point=_point(old_data, old_end),
        new_end_point=_point(data, new_end),
    )
    return parser.parse(data, old_tree)


class TreeCache:
    """(bytes, tree) of the last `capacity` files parsed, by (path, language)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], tuple[bytes, Tree]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, rel: str, language: str) -> tuple[bytes, Tree] | None:
        with self._lock:
            return self._items.pop((rel, language), None)

    def put(self, rel: str, language: str, data: bytes, tree: Tree) -> None:
        with self._lock:
            self._items[(rel, language)] = (data, tree)
            self._items.move_to_end((rel, language))
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
