"""One msgpack client connection of the team server.

Reads frames (size and time limits from `Limits`), answers the handshake, dispatches
messages to the `CompletionService` and streams results back through a single writer task
that drops the client if it stops reading. Any malformed message gets an ``error`` frame;
only errors that break the framing (oversized or half-sent frames, failed handshake, too
many errors) close the connection. When the connection ends for any reason, every request
it still has is cancelled so the engine stops working for a client that is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from deepfim.engine.api import CompletionResult
from deepfim.engine.server import frames
from deepfim.engine.server.auth import Principal
from deepfim.engine.server.frames import ConnectionClosed, ProtocolError
from deepfim.engine.server.service import CompletionService, Job

log = logging.getLogger(__name__)

MALFORMED = frozenset(
    {"bad_msgpack", "bad_message", "bad_request", "unknown_type", "unsupported_version", "duplicate_id"}
)


def result_message(job_id: str, result: CompletionResult) -> dict:
    return {
        "type": "result",
        "id": job_id,
        "cancelled": result.cancelled,
        "candidates": [dataclasses.asdict(c) for c in result.candidates],
        "timings": dataclasses.asdict(result.timings),
    }


class Connection:
    def __init__(self, service: CompletionService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.service = service
        self.limits = service.limits
        self.reader, self.writer = reader, writer
        self.peer = writer.get_extra_info("peername")
        self.principal: Principal | None = None
        self.jobs: dict[str, Job] = {}
        self.errors = 0
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False
        self._side_tasks: set[asyncio.Task] = set()  # replies computed off the loop (stats)

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        writer_task = asyncio.create_task(self._write_loop())
        self.service.connections["msgpack"] += 1
        try:
            await self._read_loop()
        except ConnectionClosed:
            pass
        except (ConnectionError, OSError) as exc:  # reset, TLS failure, aborted by the writer
            log.debug("connection %s dropped: %r", self.peer, exc)
        finally:
            self._closed = True
            for job in list(self.jobs.values()):
                self.service.cancel(job)  # the client is gone: stop working for it
            self.service.connections["msgpack"] -= 1
            if self.principal is not None:
                self.service.close_connection(self.principal)
            self._out.put_nowait(None)
            await writer_task

    async def _read_loop(self) -> None:
        lim = self.limits
        while True:
            authed = self.principal is not None
            try:
                body = await frames.read_frame(
                    self.reader,
                    lim.max_frame_bytes if authed else lim.max_preauth_frame_bytes,
                    lim.idle_timeout_s if authed else lim.hello_timeout_s,
                    lim.frame_timeout_s,
                )
                self._dispatch_safely(frames.decode(body))
            except ProtocolError as exc:
                self.service.reject(self.principal, exc.code)
                self.errors += exc.code in MALFORMED  # refusals (rate, limits) are not misbehaviour
                fatal = exc.fatal or self.principal is None
                if not fatal and self.errors > lim.max_protocol_errors:
                    exc = ProtocolError("too_many_errors", f"more than {lim.max_protocol_errors} bad messages")
                    fatal = True
                self.send(
                    {
                        "type": "error",
                        "id": exc.request_id,
                        "code": exc.code,
                        "message": exc.message,
                        "fatal": fatal,
                    }
                )
                if fatal:
                    log.info("closing connection %s: %s", self.peer, exc)
                    return

    def send(self, msg: dict) -> None:
        if not self._closed:
            self._out.put_nowait(frames.encode(msg))

    async def _write_loop(self) -> None:
        try:
            while (frame := await self._out.get()) is not None:
                self.writer.write(frame)
                await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout_s)
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.info("dropping connection %s: cannot write (%r)", self.peer, exc)
            self._closed = True
            self.writer.transport.abort()  # wakes the reader, which then cancels the jobs
            return
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5.0)
        except (TimeoutError, ConnectionError, OSError):
            self.writer.transport.abort()

    # ------------------------------------------------------------ messages

    def _dispatch_safely(self, msg: dict) -> None:
        """`_dispatch`, with a bug in handling one message answered as an error, not a dead connection."""
        try:
            self._dispatch(msg)
        except ProtocolError:
            raise
        except Exception:
            log.exception("handling a %r message from %s failed", msg.get("type"), self.peer)
            rid = msg.get("id") if isinstance(msg.get("id"), str) else None
            raise ProtocolError("internal_error", "the server failed to handle this message", request_id=rid) from None

    def _dispatch(self, msg: dict) -> None:
        kind = msg["type"]
        if self.principal is None:
            if kind != "hello":
                raise ProtocolError("unauthorized", f"send 'hello' with a token first (got {kind!r})", fatal=True)
            self._hello(msg)
            return
        current = self.service.reauthenticate(self.principal)
        if current is None:
            raise ProtocolError("unauthorized", "this connection's token has been revoked", fatal=True)
        self.principal = current
        handler = {
            "complete": self._complete,
            "cancel": self._cancel,
            "ping": self._ping,
            "stats": self._stats,
            "get_tokenizer": self._get_tokenizer,
            "list_users": self._list_users,
            "hello": self._hello_again,
        }.get(kind)
        if handler is None:
            raise ProtocolError("unknown_type", f"unknown message type {kind[:64]!r}")
        handler(msg)

    def _hello(self, msg: dict) -> None:
        principal = self.service.authenticate(msg.get("token"))
        if principal is None:
            raise ProtocolError("unauthorized", "unknown or missing token", fatal=True)
        self.service.open_connection(principal, "msgpack")
        self.principal = principal
        log.info("%s authenticated as %s (%s)", self.peer, principal.name, principal.role)
        self.send({"type": "welcome", **self.service.welcome(principal)})

    def _hello_again(self, msg: dict) -> None:
        raise ProtocolError("bad_request", "already authenticated on this connection")

    def _complete(self, msg: dict) -> None:
        spec = frames.parse_complete(msg, self.service.tokenizer.vocab_size)
        if spec.id in self.jobs:
            raise ProtocolError("duplicate_id", f"request id {spec.id!r} is already in flight", request_id=spec.id)
        self.jobs[spec.id] = self.service.start(self.principal, spec, self, "msgpack")

    def _cancel(self, msg: dict) -> None:
        job = self.jobs.get(frames.request_id(msg))
        if job is not None:  # unknown id: it finished already (a normal race), nothing to do
            self.service.cancel(job)

    def _ping(self, msg: dict) -> None:
        nonce = msg.get("nonce")
        self.send({"type": "pong", "nonce": nonce if isinstance(nonce, int | str) else None})

    def _stats(self, msg: dict) -> None:
        async def reply() -> None:
            try:  # the engine may hold its lock for a whole step: keep the event loop free meanwhile
                data = await asyncio.get_running_loop().run_in_executor(None, self.service.backend.stats)
            except Exception as exc:
                data = {"error": str(exc)}
            self.send({"type": "stats", "data": _plain(data)})

        task = asyncio.ensure_future(reply())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _get_tokenizer(self, msg: dict) -> None:
        self.send(
            {
                "type": "tokenizer",
                "sha256": self.service.tokenizer_sha256,
                "data": self.service.tokenizer_bytes,
            }
        )

    def _list_users(self, msg: dict) -> None:
        if not self.principal.is_admin:
            raise ProtocolError("forbidden", "listing users needs the admin token")
        self.send({"type": "users", "users": self.service.users.user_names()})

    # ------------------------------------------------------------ JobSink

    def on_text(self, job: Job, index: int, text: str) -> None:
        if job.spec.stream:
            self.send({"type": "chunk", "id": job.spec.id, "index": index, "text": text})

    def on_done(self, job: Job, result: CompletionResult | None, error: ProtocolError | None) -> None:
        self.jobs.pop(job.spec.id, None)
        if error is not None:
            self.send(
                {
                    "type": "error",
                    "id": job.spec.id,
                    "code": error.code,
                    "message": error.message,
                    "fatal": False,
                }
            )
        else:
            self.send(result_message(job.spec.id, result))


def _plain(value, depth: int = 0):
    """Backend stats reduced to what msgpack can carry (unknown objects become strings)."""
    if depth > 8:
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    return str(value)
