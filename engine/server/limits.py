"""Server limits and the per-user token bucket.

`Limits` holds the server-wide defaults; a user's entry in the users file may override the
per-user ones (`auth.LIMIT_KEYS`). Every limit is enforced before any work is queued.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from deepfim.engine.server.auth import LIMIT_KEYS


@dataclass(frozen=True)
class Limits:
    """What one client may send and hold. Validated on construction."""

    # bodies (checked before a byte of them is parsed, and before any tokenizing)
    max_body_bytes: int = 16 << 20  # a 1M-token prompt is ~7 MiB as a JSON list of ids
    max_text_bytes: int = 1 << 20  # prompt + suffix text of one OpenAI-style request (tokenized by the server)
    # per user (overridable in the users file)
    max_prompt_tokens: int = 1 << 20
    max_new_tokens: int = 1024
    requests_per_second: float = 20.0
    burst: int = 40
    max_inflight: int = 8  # queued + running requests of one user
    # server-wide
    max_backend_inflight: int = 32  # requests handed to the engine at once (it decodes them together)
    max_connections: int = 256
    max_connections_per_address: int = 32  # counted from TCP accept on, before TLS and before any token
    # timeouts (seconds)
    tls_handshake_timeout_s: float = 10.0
    request_head_timeout_s: float = 10.0  # from connect (or the last response) to a complete request head
    body_timeout_s: float = 15.0  # a started body must complete in this time
    idle_timeout_s: float = 60.0  # keep-alive: an idle connection between requests
    write_timeout_s: float = 30.0  # a client that stops reading is dropped
    heartbeat_s: float = 1.0  # an SSE comment when nothing else was sent, so clients can tell busy from hung

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"limit {f.name} must be a positive number, got {value!r}")
        if self.max_text_bytes > self.max_body_bytes:
            raise ValueError(f"max_text_bytes ({self.max_text_bytes}) exceeds max_body_bytes ({self.max_body_bytes})")

    def for_user(self, overrides: dict) -> Limits:
        """These limits with a user's overrides applied (only the per-user keys)."""
        unknown = set(overrides) - set(LIMIT_KEYS)
        if unknown:
            raise ValueError(f"unknown per-user limits {sorted(unknown)} (allowed: {LIMIT_KEYS})")
        return dataclasses.replace(self, **overrides) if overrides else self

    def public(self) -> dict:
        """What a client is told in `welcome` (enough to stay within limits)."""
        keys = (
            "max_body_bytes",
            "max_text_bytes",
            "max_prompt_tokens",
            "max_new_tokens",
            "requests_per_second",
            "burst",
            "max_inflight",
        )
        return {k: getattr(self, k) for k in keys}


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. Used on the event loop only."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> float:
        """Takes one token: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
