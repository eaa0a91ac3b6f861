"""Background prefills that run only while the user pauses: a file's copy (copy_prefill.py) and
the window where the cursor rests (cursor_prefetch.py).

A key that arrives during a background chunk waits for the rest of it (~50 ms at 16K tokens on
one core), so a prefill starts only after `IDLE_S` without an open, a key or a request (the
warmer's activity clock: `RepositoryWarmer.touch`), a key cancels it, and it starts again at the
next pause from the last 128-token block it finished (the prefix cache holds each).
"""

from __future__ import annotations

import asyncio
import time

from deepfim.engine.api import CompletionRequest

IDLE_S = 0.3
POLL_S = 0.05


def last_activity(server) -> float:
    """When the user last opened, edited or asked."""
    return server.warmer.last_activity


async def wait_idle(server) -> None:
    while time.monotonic() - last_activity(server) < IDLE_S:
        await asyncio.sleep(POLL_S)


async def prefill_while_idle(server, session, request: CompletionRequest) -> None:
    """Prefills `request` (a `CompletionRequest.prefill_ahead`) in the pauses between keys."""
    while True:
        await wait_idle(server)
        since = last_activity(server)
        handle = session.backend.submit(request)
        try:
            while not handle.done() and last_activity(server) == since:
                await asyncio.sleep(POLL_S)
        except asyncio.CancelledError:
            handle.cancel()
            raise
        if handle.done():
            handle.result()  # raises what the engine raised
            return
        handle.cancel()  # a key: the rest waits for the next pause
