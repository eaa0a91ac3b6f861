"""Blocks of the cursor file's prefix and suffix at fixed line numbers, tokenized through a cache.

The text is split into blocks of about `q` lines whose boundaries sit at fixed line numbers
(multiples of `q`, moved forward past blank lines). Two properties follow:

* **Exact**: with DeepSeek's pre-tokenizer a block boundary before a non-blank line is
  always a pre-token boundary, so the concatenated block ids equal the ids of the whole
  text (checked by the tests on real files). Without the blank-line rule, ``\\n\\n`` split
  across two blocks would tokenize differently.
* **Cheap and stable**: typing changes only the block holding the cursor; all other blocks'
  ids come from a small cache, and the far edge of the window stays on the same line
  while the user types, so the engine's prefix cache keeps matching.

When the window must be cut, whole blocks are dropped from the far end; only a single
block larger than the whole allowance is cut inside (keeping the tokens nearest the cursor).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from deepfim.engine.model.tokenizer import Tokenizer

CACHE_BLOCKS = 4096


class BlockCache:
    """LRU map block text -> ids for one tokenizer (thread-safe)."""

    def __init__(self, tok: Tokenizer, capacity: int = CACHE_BLOCKS) -> None:
        self.tok = tok
        self._capacity = capacity
        self._ids: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def ids(self, blocks: list[str]) -> list[list[int]]:
        out: list[list[int] | None] = []
        missing = []
        with self._lock:
            for i, block in enumerate(blocks):
                found = self._ids.get(block)
                if found is not None:
                    self._ids.move_to_end(block)
                else:
                    missing.append(i)
                out.append(found)
        if missing:
            encoded = self.tok.encode_batch([blocks[i] for i in missing])
            with self._lock:
                for i, ids in zip(missing, encoded, strict=True):
                    out[i] = ids
                    self._ids[blocks[i]] = ids
                while len(self._ids) > self._capacity:
                    self._ids.popitem(last=False)
        return out  # type: ignore[return-value]


def _boundary(lines: list[str], nominal: int, stop: int) -> int:
    """First index >= nominal whose line is not blank, at most `stop`."""
    i = nominal
    while i < stop and not lines[i].strip():
        i += 1
    return min(i, stop)


def prefix_blocks(text: str, q: int, offset: int, complete: bool) -> list[str]:
    """Blocks of the prefix, nearest the cursor first (the first one ends at the cursor).

    Args:
        text: the prefix, or its tail starting at a line start.
        offset: absolute line number of `text`'s first line.
        complete: `text` is the whole prefix; else a block reaching before it is left out.
    """
    lines = text.split("\n")
    last = len(lines) - 1  # the cursor's (partial) line
    blocks, end = [], last + 1
    k = (offset + last) // q
    while end > 0:
        nominal = k * q - offset
        if nominal < 0 and not complete:
            break  # this block starts before the text looked at
        start = _boundary(lines, nominal, last) if k else 0
        if start < end:
            block = "\n".join(lines[start:end])
            blocks.append(block + "\n" if end <= last else block)
            end = start
        k -= 1
    return blocks


def suffix_blocks(text: str, q: int, first_line: int, complete: bool) -> list[str]:
    """Blocks of the suffix, nearest the cursor first.

    Args:
        text: the suffix, or its head ending with a newline.
        first_line: absolute line number of the cursor.
        complete: `text` is the whole suffix; else a block reaching past it is left out.
    """
    lines = text.split("\n")
    if not complete:
        lines.pop()  # "" after the final newline
    blocks, start = [], 0
    k = first_line // q + 1
    while start < len(lines):
        nominal = k * q - first_line
        end = _boundary(lines, nominal, len(lines)) if nominal < len(lines) else len(lines)
        if end >= len(lines) and not complete:
            break  # this block runs past the text looked at
        end = max(end, start + 1)
        block = "\n".join(lines[start:end])
        blocks.append(block + "\n" if end < len(lines) or not complete else block)
        start = end
        k += 1
    return blocks


def take_blocks(cache: BlockCache, blocks: list[str], allow: int, from_end: bool) -> tuple[list[int], bool, str]:
    """Ids of as many whole blocks as fit in `allow` (nearest the cursor first).

    Returns (ids, whether anything was cut, the text of the blocks taken). When the nearest
    block alone is too big, its tokens nearest the cursor are kept (the text is then the
    whole block's).
    """
    chosen: list[list[int]] = []
    texts: list[str] = []
    used = 0
    for i in range(0, len(blocks), 8):
        group = cache.ids(blocks[i : i + 8])
        for block, ids in zip(blocks[i : i + 8], group, strict=True):
            if used + len(ids) > allow:
                if not chosen and allow:  # one block alone is too big: keep the tokens nearest the cursor
                    chosen.append(ids[len(ids) - allow :] if from_end else ids[:allow])
                    texts.append(block)
                return _join(chosen, from_end), True, "".join(reversed(texts) if from_end else texts)
            chosen.append(ids)
            texts.append(block)
            used += len(ids)
    return _join(chosen, from_end), False, "".join(reversed(texts) if from_end else texts)


def _join(chosen: list[list[int]], reverse: bool) -> list[int]:
    out: list[int] = []
    for ids in reversed(chosen) if reverse else chosen:
        out.extend(ids)
    return out
