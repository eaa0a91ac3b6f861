"""Wire format of the LAN team server: length-prefixed msgpack frames.

A frame is a 4-byte big-endian unsigned length followed by that many bytes holding one
msgpack map. Every map carries ``v`` (protocol version) and ``type``. The size limit is
checked on the 4-byte header, before any of the body is read, so an oversized frame costs
the server nothing but closing that one connection.

Client → server: ``hello``, ``get_tokenizer``, ``complete``, ``cancel``, ``ping``, ``stats``,
``list_users`` (admin). Server → client: ``welcome``, ``tokenizer``, ``chunk``, ``result``,
``error``, ``pong``, ``stats``, ``users``. See docs/team-server.md for the fields.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from array import array
from dataclasses import dataclass

import msgpack

from deepfim.engine.api import Priority, SamplingParams

VERSION = 1
HEADER = struct.Struct(">I")

CLIENT_TYPES = frozenset({"hello", "get_tokenizer", "complete", "cancel", "ping", "stats", "list_users"})
SERVER_TYPES = frozenset({"welcome", "tokenizer", "chunk", "result", "error", "pong", "stats", "users"})
MAX_ID_CHARS = 128
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256


class ProtocolError(Exception):
    """A message the peer got wrong. `fatal` errors close the connection after the error frame.

    Codes are stable strings that clients can branch on (see docs/team-server.md).
    """

    def __init__(self, code: str, message: str, *, fatal: bool = False, request_id: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fatal = fatal
        self.request_id = request_id


class ConnectionClosed(Exception):
    """The peer closed the connection (cleanly between frames, or in the middle of one)."""


def encode(msg: dict) -> bytes:
    """One frame: header plus msgpack body (``v`` added when missing)."""
    if "v" not in msg:
        msg = {"v": VERSION, **msg}
    body = msgpack.packb(msg, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def _reject_ext(code: int, data: bytes) -> None:
    raise ProtocolError("bad_message", f"msgpack extension type {code} is not allowed")


def decode(body: bytes) -> dict:
    """Body bytes → message map with a known ``type``; ProtocolError (not fatal) otherwise."""
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise ProtocolError("bad_msgpack", f"body is not one valid msgpack value ({exc})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", f"a message must be a msgpack map, got {type(msg).__name__}")
    version = msg.get("v")
    if version != VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {version!r} is not supported (want {VERSION})")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", f"field 'type' must be a string, got {kind!r}")
    return msg


async def read_frame(reader: asyncio.StreamReader, max_bytes: int, idle_timeout: float, frame_timeout: float) -> bytes:
    """The next frame's body.

    Waits up to `idle_timeout` for a frame to start; once its first byte is here, the rest
    (header and body) must arrive within `frame_timeout`, so a half-sent frame cannot hold a
    connection open (slowloris). Raises ConnectionClosed, or a fatal ProtocolError for an
    oversized frame or a timeout.
    """
    try:
        first = await asyncio.wait_for(reader.readexactly(1), idle_timeout)
    except asyncio.IncompleteReadError:
        raise ConnectionClosed("peer closed the connection") from None
    except TimeoutError:
        raise ProtocolError("timeout", f"no frame within {idle_timeout:g} s of idleness", fatal=True) from None
    try:
        async with asyncio.timeout(frame_timeout):
            (length,) = HEADER.unpack(first + await reader.readexactly(HEADER.size - 1))
            if length > max_bytes:
                raise ProtocolError(
                    "frame_too_large", f"frame of {length} bytes exceeds the limit of {max_bytes}", fatal=True
                )
            return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ConnectionClosed("peer closed the connection in the middle of a frame") from None
    except TimeoutError:
        raise ProtocolError("timeout", f"frame not completed within {frame_timeout:g} s", fatal=True) from None


def read_frame_sync(sock: socket.socket, max_bytes: int) -> bytes:
    """Blocking counterpart of `read_frame` for the client (the socket's timeout applies)."""
    (length,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    if length > max_bytes:
        raise ProtocolError("frame_too_large", f"frame of {length} bytes exceeds the limit of {max_bytes}")
    return _recv_exactly(sock, length)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        data = sock.recv(min(n - len(chunks), 1 << 20))
        if not data:
            raise ConnectionClosed("server closed the connection")
        chunks += data
    return bytes(chunks)


# ---------------------------------------------------------------- message fields


def field(msg: dict, name: str, kinds: type | tuple[type, ...], default=None, *, required: bool = False):
    """`msg[name]` checked against `kinds`; bool is never accepted where int is asked."""
    if name not in msg or msg[name] is None:
        if required:
            raise ProtocolError("bad_request", f"field {name!r} is required", request_id=_id_of(msg))
        return default
    value = msg[name]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = "/".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise ProtocolError(
            "bad_request",
            f"field {name!r} must be {names}, got {type(value).__name__}",
            request_id=_id_of(msg),
        )
    return value


def _id_of(msg: dict) -> str | None:
    value = msg.get("id")
    return value if isinstance(value, str) and len(value) <= MAX_ID_CHARS else None


def request_id(msg: dict) -> str:
    rid = field(msg, "id", str, required=True)
    if not 1 <= len(rid) <= MAX_ID_CHARS:
        raise ProtocolError("bad_request", f"field 'id' must have 1..{MAX_ID_CHARS} characters")
    return rid


def pack_prompt(ids: list[int]) -> bytes:
    """Prompt ids as little-endian uint32 (4 bytes a token, decoded in C on the server)."""
    arr = array("I", ids)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()


def unpack_prompt(value, vocab_size: int, rid: str) -> list[int]:
    """Prompt from a uint32 little-endian byte string or a list of ints, range-checked."""
    if isinstance(value, bytes):
        if len(value) % 4:
            raise ProtocolError(
                "bad_request", f"binary prompt length {len(value)} is not a multiple of 4", request_id=rid
            )
        arr = array("I")
        arr.frombytes(value)
        if sys.byteorder == "big":
            arr.byteswap()
        ids = arr.tolist()
    elif isinstance(value, list):
        if not all(type(x) is int for x in value):
            raise ProtocolError("bad_request", "field 'prompt' must hold only integers", request_id=rid)
        ids = value
    else:
        raise ProtocolError(
            "bad_request", f"field 'prompt' must be bin or array, got {type(value).__name__}", request_id=rid
        )
    if not ids:
        raise ProtocolError("bad_request", "field 'prompt' is empty", request_id=rid)
    low, high = min(ids), max(ids)
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ProtocolError(
            "bad_request", f"token id {bad} is outside the vocabulary [0, {vocab_size})", request_id=rid
        )
    return ids


@dataclass
class CompleteSpec:
    """A validated ``complete`` message, before the server applies the user's limits."""

    id: str
    prompt: list[int]
    mode: str
    priority: Priority
    sampling: SamplingParams
    namespace: str | None
    stream: bool


def parse_priority(value, rid: str | None) -> Priority:
    if isinstance(value, str) and value.upper() in Priority.__members__:
        return Priority[value.upper()]
    if type(value) is int and value in {p.value for p in Priority}:
        return Priority(value)
    raise ProtocolError("bad_request", f"unknown priority {value!r} (instant, expert, background)", request_id=rid)


def parse_sampling(raw: dict, rid: str | None) -> SamplingParams:
    stop = raw.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > MAX_STOP_STRINGS:
        raise ProtocolError(
            "bad_request", f"'stop' must be a list of at most {MAX_STOP_STRINGS} strings", request_id=rid
        )
    if any(not isinstance(s, str) or len(s) > MAX_STOP_CHARS for s in stop):
        raise ProtocolError("bad_request", f"stop strings must be strings of ≤ {MAX_STOP_CHARS} chars", request_id=rid)
    number = (int, float)
    try:
        return SamplingParams(
            temperature=float(field(raw, "temperature", number, 0.0)),
            top_p=float(field(raw, "top_p", number, 1.0)),
            max_tokens=field(raw, "max_tokens", int, 64),
            stop=tuple(stop),
            n=field(raw, "n", int, 1),
            seed=field(raw, "seed", int, None),
            speculative=field(raw, "speculative", bool, True),
        )
    except ProtocolError as exc:
        exc.request_id = rid
        raise
    except ValueError as exc:
        raise ProtocolError("bad_request", str(exc), request_id=rid) from None


def parse_complete(msg: dict, vocab_size: int) -> CompleteSpec:
    """Checks every field of a ``complete`` message; ProtocolError names the bad one."""
    rid = request_id(msg)
    raw_sampling = field(msg, "sampling", dict, {})
    mode = field(msg, "mode", str, "instant")
    namespace = field(msg, "namespace", str, None)
    stream = field(msg, "stream", bool, True)
    return CompleteSpec(
        id=rid,
        prompt=unpack_prompt(msg.get("prompt"), vocab_size, rid),
        mode=mode,
        priority=parse_priority(msg.get("priority", "instant"), rid),
        sampling=parse_sampling(raw_sampling, rid),
        namespace=namespace,
        stream=stream,
    )
