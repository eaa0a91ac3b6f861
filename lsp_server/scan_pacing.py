"""When the workspace index may read files: once the engine is up, and never beside a completion.

A scan is Python (reading, tree-sitter, extraction) and holds the GIL nearly all the time.
Beside it, the engine's import at a start and every model call on the modules (~1,500 torch
ops a call, each waiting for the GIL) slow down several times over. Measured on 2 cores with a
copy of CPython's Lib (604 files, a 4 s scan) as the workspace: editor start -> first
suggestion took 6.8-8.3 s with the scan running from the start, where the bundled-size
workspace takes ~2 s; with the scan after the engine but beside the request, that request's
prefill of 307 tokens took 2.9 s instead of ~0.1 s.

So the language server starts a scan once the engine is loaded (or has failed), and the scan
waits before each file while a completion is in flight: at most `MAX_WAIT_S` a file, so that a
client sending requests without pause cannot keep the index from ever being built.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

MAX_WAIT_S = 2.0  # a completion takes well under this; longer, and the scan goes on anyway


class ScanPacing:
    """Counts completions in flight (on the event loop); scans wait for none (on their thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Event()
        self._idle.set()

    @contextmanager
    def completion(self) -> Iterator[None]:
        """Around one completion request: scans hold back until it is answered."""
        with self._lock:
            self._in_flight += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

    def wait_turn(self) -> None:
        """Before a scan reads its next file: returns once no completion is in flight, or after
        `MAX_WAIT_S`."""
        self._idle.wait(MAX_WAIT_S)
