"""`$/progress` for long background work (model loading, workspace indexing).

Server-initiated progress needs the client's `window.workDoneProgress` capability and a
token created with `window/workDoneProgress/create`; without them the reporter is silent.
The work never waits for the token: `begin` returns at once and the token is created beside
it. Reports from worker threads are handed to the event loop and throttled.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from lsprotocol import types
from pygls.exceptions import JsonRpcMethodNotFound
from pygls.lsp.server import LanguageServer

logger = logging.getLogger(__name__)

MIN_REPORT_INTERVAL_S = 0.2
# vscode-languageclient sends `initialized` and only then registers its features; a create
# request that lands in between is answered "method not found". Work begun at `initialized`
# (indexing) hits that gap on a fast machine, so such a refusal is tried again a few times.
CREATE_TRIES = 4
CREATE_RETRY_S = 0.1


class ProgressReporter:
    """One begin → report* → end sequence."""

    def __init__(self, server: LanguageServer, title: str) -> None:
        self._server = server
        self._title = title
        self._token = f"deepfim-{uuid.uuid4().hex[:12]}"
        self._active = False
        self._ended: str | None = None  # `end`'s message when the work ended before the token existed
        self._last_report = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._creating: asyncio.Task | None = None

    def _supported(self) -> bool:
        caps = self._server.client_capabilities
        return bool(caps.window and caps.window.work_done_progress)

    def begin(self, message: str | None = None) -> None:
        """Announce the work (on the event loop); the token is created in the background."""
        self._loop = asyncio.get_running_loop()
        if self._supported():
            self._creating = self._loop.create_task(self._create_and_begin(message))

    async def _create_and_begin(self, message: str | None) -> None:
        for attempt in range(1, CREATE_TRIES + 1):
            try:
                await self._server.work_done_progress.create_async(self._token)
                break
            except JsonRpcMethodNotFound as exc:
                if attempt == CREATE_TRIES:
                    logger.info("client refused a progress token %d times: %s", attempt, exc)
                    return
                await asyncio.sleep(CREATE_RETRY_S * attempt)
            except Exception as exc:  # a client may refuse; progress is only a courtesy
                logger.info("client refused a progress token: %s", exc)
                return
        self._active = True
        self._server.work_done_progress.begin(
            self._token, types.WorkDoneProgressBegin(title=self._title, message=message, percentage=0)
        )
        if self._ended is not None:  # short work: it is shown as begun and ended
            self.end(self._ended)

    def report_threadsafe(self, message: str, percentage: int | None = None) -> None:
        """Report from any thread; reports closer than `MIN_REPORT_INTERVAL_S` are dropped."""
        now = time.monotonic()
        if not self._active or self._loop is None or now - self._last_report < MIN_REPORT_INTERVAL_S:
            return
        self._last_report = now
        self._loop.call_soon_threadsafe(self._report, message, percentage)

    def _report(self, message: str, percentage: int | None) -> None:
        if self._active:
            value = types.WorkDoneProgressReport(message=message, percentage=percentage)
            self._server.work_done_progress.report(self._token, value)

    def end(self, message: str) -> None:
        """End the work (on the event loop); before the token exists, once it does."""
        if self._active:
            self._active = False
            self._server.work_done_progress.end(self._token, types.WorkDoneProgressEnd(message=message))
        elif self._creating is not None and not self._creating.done():
            self._ended = message
