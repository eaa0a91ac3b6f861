"""What a completion request to the team server is, and how its fields are checked.

`RequestError` carries a stable code clients can branch on (docs/team-server.md) and the HTTP
status it is answered with. `CompleteSpec` is a validated request before the user's limits are
applied; `parse_sampling` and `parse_priority` check the fields both request forms share (the
OpenAI body in openai_compat.py builds a `CompleteSpec` from them).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfim.engine.api import Priority, SamplingParams

MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256

STATUS = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_mode": 404,
    "method_not_allowed": 405,
    "timeout": 408,
    "body_too_large": 413,
    "prompt_too_long": 413,
    "rate_limited": 429,
    "too_many_inflight": 429,
    "too_many_connections": 429,
    "internal_error": 500,
    "backend_error": 500,
    "cancelled": 503,
    "unavailable": 503,
}


class RequestError(Exception):
    """A request the server refuses or could not complete; `status` is its HTTP status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message
        self.status = status if status is not None else STATUS.get(code, 400)


@dataclass
class CompleteSpec:
    """A validated completion request, before the server applies the user's limits."""

    id: str
    prompt: list[int]
    mode: str
    priority: Priority
    sampling: SamplingParams
    namespace: str | None
    stream: bool


def field(body: dict, name: str, kinds: type | tuple[type, ...], default=None):
    """`body[name]` checked against `kinds`; bool is never accepted where a number is asked."""
    value = body.get(name)
    if value is None:
        return default
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise RequestError("bad_request", f"field {name!r} must be {names}, got {type(value).__name__}")
    return value


def parse_priority(value) -> Priority:
    if value is None:
        return Priority.INSTANT
    if isinstance(value, str) and value.upper() in Priority.__members__:
        return Priority[value.upper()]
    raise RequestError("bad_request", f"unknown priority {value!r} (instant, expert, background)")


def parse_sampling(raw: dict) -> SamplingParams:
    stop = raw.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > MAX_STOP_STRINGS:
        raise RequestError("bad_request", f"'stop' must be a list of at most {MAX_STOP_STRINGS} strings")
    if any(not isinstance(s, str) or len(s) > MAX_STOP_CHARS for s in stop):
        raise RequestError("bad_request", f"stop strings must be strings of ≤ {MAX_STOP_CHARS} chars")
    number = (int, float)
    try:
        return SamplingParams(
            temperature=float(field(raw, "temperature", number, 0.0)),
            top_p=float(field(raw, "top_p", number, 1.0)),
            max_tokens=field(raw, "max_tokens", int, 16),
            stop=tuple(stop),
            n=field(raw, "n", int, 1),
            seed=field(raw, "seed", int, None),
            speculative=field(raw, "speculative", bool, True),
            token_healing=field(raw, "token_healing", bool, True),
            stop_loops=field(raw, "stop_loops", bool, True),
            confidence_floor=_optional_float(field(raw, "confidence_floor", number, None)),
        )
    except ValueError as exc:  # SamplingParams names the bad value
        raise RequestError("bad_request", str(exc)) from None


def _optional_float(value):
    return None if value is None else float(value)


def parse_prompt_ids(value: list, vocab_size: int) -> list[int]:
    """A prompt given as token ids, range-checked."""
    if not value:
        raise RequestError("bad_request", "field 'prompt' is empty")
    if not all(type(x) is int for x in value):
        raise RequestError("bad_request", "a token-id 'prompt' must hold only integers")
    low, high = min(value), max(value)
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise RequestError("bad_request", f"token id {bad} is outside the vocabulary [0, {vocab_size})")
    return value
