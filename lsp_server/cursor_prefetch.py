"""Prefills the prompt at the place where the cursor rests, before the user types there.

A newly opened file's first suggestion prefills its whole cursor window (~370 tokens, most of
its latency: `deepfim bench latency`), because every cursor position has a window of its own.
But a user opens a file, moves to a line and reads before typing. The editor clients report
where the cursor comes to rest (`deepfim/cursor`, docs/protocol.md); once the user pauses
(`idle_prefill.py`) the server prefills the prompt an automatic request there would send, after
the file's copy when it has one (copy_prefill.py). The first key then resumes from the prefix
cache's snapshot within its last 16 tokens. An Enter shifts the lines after the cursor, and
with them the blocks the suffix and the far prefix are tokenized in (`context/window.py`), so
its prompt shares little with the one at the resting place: where the cursor rests at the end
of a line, the prompt after an Enter there is prefetched next (`after_enter`), as the editor
would indent the new line; another indentation changes only the prompt's last tokens.

At most one position is prefetched at a time: the last one reported. The buffer must still be
the one the position was reported in; a key sent meanwhile makes it moot (its own request
prefills that window).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from lsprotocol import types

from deepfim.engine.api import CompletionRequest
from deepfim.lsp_server.idle_prefill import prefill_while_idle, wait_idle

logger = logging.getLogger(__name__)


@dataclass
class CursorStats:
    """What `deepfim/status` says about cursor prefetches."""

    reported: int = 0  # `deepfim/cursor` notifications
    prefetched: int = 0  # windows prefilled
    moot: int = 0  # positions whose buffer changed (or closed) before their turn
    tokens: int = 0  # their prompts' tokens after the part every file shares
    last_ms: float = 0.0

    def as_dict(self) -> dict:
        return {"reported": self.reported, "prefetched": self.prefetched, "moot": self.moot, "tokens": self.tokens,
                "last_ms": round(self.last_ms, 1)}  # fmt: skip


class CursorPrefetcher:
    def __init__(self, server) -> None:
        self.server = server
        self.stats = CursorStats()
        self._task: asyncio.Task | None = None

    def rested(self, uri: str, line: int, character: int) -> None:
        """The cursor came to rest at (line, character) of `uri` (the client's encoding)."""
        self.stats.reported += 1
        doc = self.server.documents.get(uri)
        if doc is None:
            return
        if self._task is not None:
            self._task.cancel()  # only the last position counts
        offset = doc.offset_at(types.Position(line=line, character=character), self.server.encoding)
        self._task = self.server.spawn(self._prefetch(uri, doc, doc.text, offset))

    def status(self) -> dict:
        return self.stats.as_dict()

    async def _prefetch(self, uri: str, doc, text: str, offset: int) -> None:
        entered = after_enter(text[:offset], text[offset:])
        prefixes = (text[:offset], *([entered] if entered is not None else []))
        # What a request sends now comes first: a newly opened file's copy still being prefilled
        # (~0.5-1 s of a big file on a small CPU) kept these windows waiting past a 1 s pause, and
        # the key after it prefilled its window itself (`deepfim bench latency`, cursor rested).
        # The copies wait (each resumes from its last finished block); once this file's is held,
        # requests send it, so the windows are prefetched again after it.
        server = self.server
        deferred = server.copies.defer()
        try:
            if not await self._prefetch_all(uri, doc, text, prefixes, text[offset:]):
                return
        finally:
            for other in sorted(deferred, key=lambda u: u != uri):  # this file's copy first
                if server.documents.get(other) is not None:
                    server.copies.schedule(other)
        copy = server.copies.running(uri) if uri in deferred else None
        if copy is not None:
            await asyncio.wait({copy})  # the copy comes first in the prompt; its task may be cancelled
        if uri in deferred and server.copies.has(uri):  # else no copy came of it: the windows stand
            await self._prefetch_all(uri, doc, text, prefixes, text[offset:])

    async def _prefetch_all(self, uri: str, doc, text: str, prefixes: tuple[str, ...], suffix: str) -> bool:
        """`_prefetch_one` for each prefix in turn; False once the buffer changed."""
        for prefix in prefixes:
            if not await self._prefetch_one(uri, doc, text, prefix, suffix):
                return False
        return True

    async def _prefetch_one(self, uri: str, doc, text: str, prefix: str, suffix: str) -> bool:
        """Prefills the prompt an automatic request at `prefix`|`suffix` would send, once the
        user pauses, while `doc` still holds `text`; False when the buffer changed first."""
        server = self.server
        await wait_idle(server)
        session = server.session
        if server.documents.get(uri) is not doc or doc.text != text:
            self.stats.moot += 1
            return False
        if server.prefill_source(doc) is None:
            return True
        started = time.perf_counter()
        try:
            mode = server.mode  # of automatic requests
            packed = await server.pack_prompt(session, doc.path, prefix, suffix, mode)
            if not server.copies.held(uri, packed.built):
                packed = packed.without_copy()  # what an automatic request sends while the copy is not held
            built = packed.built
            ids = built.prompt.ids
            request = CompletionRequest.prefill_ahead(ids, built.anchors(), mode)
            await prefill_while_idle(server, session, request)
            self.stats.prefetched += 1
            self.stats.tokens += len(ids) - built.shared_tokens
            self.stats.last_ms = (time.perf_counter() - started) * 1000
            logger.debug("prompt at %s:%d prefetched: %d tokens in %.0f ms", doc.path, prefix.count("\n") + 1,
                         len(ids), self.stats.last_ms)  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("prefetching the prompt at the cursor in %s failed", doc.path)
        return True


OPENERS = (":", "{", "(", "[")  # a line ending so: editors indent the next one a level deeper


def after_enter(prefix: str, suffix: str) -> str | None:
    """The prefix after an Enter at the cursor, indented as editors indent the new line (the
    line's own indentation, one level deeper after an opener); None unless the cursor is at the
    end of its line."""
    rest = suffix.split("\n", 1)[0]
    if rest.strip():
        return None
    line = prefix[prefix.rfind("\n") + 1 :]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    if line.rstrip().endswith(OPENERS):
        indent += "\t" if indent.startswith("\t") else "    "
    return prefix + "\n" + indent
