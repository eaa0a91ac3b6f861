"""Problems the user should hear about without being flooded: every one goes to the log; at
most one status message per kind a minute reaches the editor.

A client that sends a thousand malformed messages, or a model that fails every request,
must not pop up a thousand messages: the first of a kind is shown at once, later ones within
the interval are counted and the count rides along with the next message shown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

INTERVAL_S = 60.0

# kinds (a fixed vocabulary: the per-kind state stays bounded whatever the client sends)
FRAMING = "framing"  # bytes that were no message, oversize messages
PARSE = "parse"  # bodies that are not JSON
INVALID_REQUEST = "invalid-request"  # JSON that is no JSON-RPC message
INVALID_PARAMS = "invalid-params"  # LSP messages whose params do not fit their type
TEXT = "text"  # document text that had to be repaired (lone surrogates, invalid UTF-8)
LARGE_DOCUMENT = "large-document"  # buffers over the size limit: no completions in them
COMPLETION = "completion"  # a completion failed (engine error, non-finite logits, ...)
SERVER = "server"  # any other error outside a request's own answer
KINDS = (FRAMING, PARSE, INVALID_REQUEST, INVALID_PARAMS, TEXT, LARGE_DOCUMENT, COMPLETION, SERVER)


class ProblemReporter:
    """Logs problems and shows them through `show`, at most once per kind per `interval_s`.

    Args:
        show: sends one status message to the editor (e.g. `window/showMessage`).
        interval_s: the least time between two messages of one kind.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self, show: Callable[[str], None], interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._show = show
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_shown: dict[str, float] = {}
        self._held: dict[str, int] = {}  # problems of a kind logged but not shown since the last message
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)

    def report(self, kind: str, message: str, level: int = logging.WARNING) -> bool:
        """Log `message`; show it unless a message of `kind` was shown within the interval.
        Returns whether it was shown."""
        if kind not in self.counts:
            raise ValueError(f"unknown problem kind {kind!r}; expected one of {KINDS}")
        logger.log(level, "%s: %s", kind, message)
        now = self._clock()
        with self._lock:
            self.counts[kind] += 1
            last = self._last_shown.get(kind)
            if last is not None and now - last < self._interval:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            self._last_shown[kind] = now
            held = self._held.pop(kind, 0)
        more = f" (and {held} more like it in the last minute; see the log)" if held else " (see the log)"
        try:
            self._show(f"DeepFIM: {message}{more}")
        except Exception:  # the editor connection may be gone: the log has it
            logger.debug("could not show a status message", exc_info=True)
        return True
