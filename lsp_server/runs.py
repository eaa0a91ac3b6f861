"""Model calls in flight, one per document and surface, shared by the requests that type
along them.

A keystroke normally supersedes the model call of the previous one (latest wins: its decode
is cancelled). But when the characters typed since that call started are exactly what the
model has streamed so far, the call is still right: the new request joins it and is served
the rest of its suggestion, instead of throwing the work away and starting over. A call is
cancelled when it is superseded, or when every request waiting for it was cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

ANCHOR_CHARS = 256  # prefix tail / suffix head compared to recognise the same document

T = TypeVar("T")


@dataclass(frozen=True)
class Anchor:
    """Where a suggestion was made: enough of the text around the cursor to tell whether a
    later document state only adds characters typed at that cursor."""

    prefix_len: int
    prefix_tail: str
    suffix_len: int
    suffix_head: str

    @classmethod
    def at(cls, prefix: str, suffix: str) -> Anchor:
        return cls(len(prefix), prefix[-ANCHOR_CHARS:], len(suffix), suffix[:ANCHOR_CHARS])

    def typed_since(self, prefix: str, suffix: str) -> str | None:
        """The characters typed at the anchor since, or None if anything else changed."""
        if len(prefix) < self.prefix_len or len(suffix) != self.suffix_len:
            return None
        if not suffix.startswith(self.suffix_head):
            return None
        if prefix[self.prefix_len - len(self.prefix_tail) : self.prefix_len] != self.prefix_tail:
            return None
        return prefix[self.prefix_len :]


class PartialText:
    """The best candidate's text as it streams in (written by the engine's thread)."""

    def __init__(self) -> None:
        self.text = ""


@dataclass
class Run(Generic[T]):
    anchor: Anchor
    partial: PartialText
    task: asyncio.Future[T]
    waiters: int = 0
    superseded: bool = False


@dataclass
class Runs(Generic[T]):
    """The model calls in flight, by (document URI, surface)."""

    _runs: dict[tuple[str, str], Run[T]] = field(default_factory=dict)

    def joinable(self, key: tuple[str, str], prefix: str, suffix: str) -> tuple[Run[T], str] | None:
        """The call in flight for `key` and the characters typed since it started, if the
        model has already streamed exactly those characters."""
        run = self._runs.get(key)
        if run is None or run.task.done():
            return None
        typed = run.anchor.typed_since(prefix, suffix)
        if typed is None or not run.partial.text.startswith(typed):
            return None
        return run, typed

    def __len__(self) -> int:
        """The calls still running."""
        return sum(not run.task.done() for run in self._runs.values())

    def start(self, key: tuple[str, str], anchor: Anchor, call: Callable[[PartialText], Awaitable[T]]) -> Run[T]:
        """Supersede the call in flight for `key` and start `call`."""
        self.supersede(key)
        partial = PartialText()
        return self._register(key, Run(anchor, partial, asyncio.ensure_future(call(partial))))

    def go_on(self, key: tuple[str, str], anchor: Anchor, partial: PartialText, rest: Awaitable[T]) -> Run[T]:
        """Keeps writing, under `key`, a call whose first part was shown (its run is ending):
        a request typing along it joins it; a new call supersedes it, with no one waiting."""
        return self._register(key, Run(anchor, partial, asyncio.ensure_future(rest)))

    def _register(self, key: tuple[str, str], run: Run[T]) -> Run[T]:
        self._runs[key] = run
        run.task.add_done_callback(lambda _: self._forget(key, run))
        return run

    def _forget(self, key: tuple[str, str], run: Run[T]) -> None:
        if self._runs.get(key) is run:
            del self._runs[key]
        if not run.task.cancelled() and run.task.exception() is not None:
            logger.error("completion failed", exc_info=run.task.exception())

    def supersede(self, key: tuple[str, str]) -> None:
        run = self._runs.pop(key, None)
        if run is not None and not run.task.done():
            run.superseded = True
            run.task.cancel()

    def supersede_document(self, uri: str) -> None:
        for key in [key for key in self._runs if key[0] == uri]:
            self.supersede(key)

    def supersede_all(self) -> None:
        for key in list(self._runs):
            self.supersede(key)

    async def wait(self, run: Run[T]) -> T | None:
        """The call's result; None if it was superseded.

        Raises:
            asyncio.CancelledError: the waiting request itself was cancelled. The call goes
                on for the other requests waiting for it, or is cancelled if there are none.
        """
        run.waiters += 1
        try:
            return await asyncio.shield(run.task)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if run.superseded and task is not None and not task.cancelling():
                return None
            raise
        finally:
            run.waiters -= 1
            if run.waiters == 0 and not run.task.done():
                run.task.cancel()
