"""The HTTP side of the team server (its own port, same TLS): health, metrics, OpenAI API.

Routes: ``GET /health`` (no auth, no details), ``GET /metrics`` (Prometheus text; any valid
token, per-user series only for the admin token), ``GET /v1/models``, ``POST
/v1/completions`` (OpenAI-compatible, ``prompt`` + ``suffix`` → FIM, optional SSE
streaming; user token), ``GET /admin/users`` (admin token). HTTP/1.1 with keep-alive and
Content-Length bodies only, parsed with asyncio streams: a few routes do not justify a web
framework. Requests share the users, limits and fair admission of the msgpack side.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from deepfim.engine.server.auth import Principal
from deepfim.engine.server.frames import ConnectionClosed, ProtocolError
from deepfim.engine.server.openai_compat import (
    completion_spec,
    error_body,
    finish_chunk,
    response_body,
    text_chunk,
)
from deepfim.engine.server.service import CompletionService, Job

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 << 10
MAX_HEADERS = 100
STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
CODE_STATUS = {
    "unauthorized": 401,
    "forbidden": 403,
    "rate_limited": 429,
    "too_many_inflight": 429,
    "too_many_connections": 429,
    "unknown_mode": 404,
    "backend_error": 500,
    "cancelled": 503,
    "timeout": 408,
    "frame_too_large": 413,
}


class HttpError(Exception):
    """An error answer; `principal` is charged with it, `counted` when metrics already have it."""

    def __init__(self, status: int, code: str, message: str, principal: Principal | None = None, counted: bool = False):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.principal, self.counted = principal, counted


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


async def read_request(reader: asyncio.StreamReader, max_body: int, idle_s: float, frame_s: float) -> Request | None:
    """The next request on a connection, None when the client closed it between requests."""
    try:
        first = await asyncio.wait_for(reader.read(1), idle_s)
    except TimeoutError:
        return None
    if not first:
        return None
    try:
        async with asyncio.timeout(frame_s):
            head = first + await reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise HttpError(400, "bad_request", f"malformed request line {lines[0][:80]!r}")
            if len(lines) - 1 > MAX_HEADERS:
                raise HttpError(431, "bad_request", f"more than {MAX_HEADERS} header lines")
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep or not name.strip():
                    raise HttpError(400, "bad_request", f"malformed header line {line[:80]!r}")
                headers[name.strip().lower()] = value.strip()
            if "transfer-encoding" in headers:
                raise HttpError(501, "bad_request", "chunked request bodies are not supported; send Content-Length")
            length_text = headers.get("content-length", "0")
            if not length_text.isdigit():
                raise HttpError(400, "bad_request", f"bad Content-Length {length_text[:40]!r}")
            if int(length_text) > max_body:
                raise HttpError(413, "frame_too_large", f"body of {length_text} bytes exceeds {max_body}")
            body = await reader.readexactly(int(length_text))
    except TimeoutError:
        raise HttpError(408, "timeout", f"request not completed within {frame_s:g} s") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "bad_request", f"request head exceeds {MAX_HEADER_BYTES} bytes") from None
    except asyncio.IncompleteReadError:
        raise ConnectionClosed("client closed the connection in the middle of a request") from None
    keep_alive = headers.get("connection", "").lower() != "close" and parts[2] == "HTTP/1.1"
    return Request(parts[0], parts[1].split("?", 1)[0], headers, body, keep_alive)


class HttpConnection:
    def __init__(self, service: CompletionService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.service, self.reader, self.writer = service, reader, writer
        self.limits = service.limits

    async def run(self) -> None:
        self.service.connections["http"] += 1
        try:
            keep = True
            while keep:
                request = await read_request(
                    self.reader,
                    self.limits.max_frame_bytes,
                    self.limits.idle_timeout_s,
                    self.limits.frame_timeout_s,
                )
                if request is None:
                    break
                try:
                    keep = await self._route(request) and request.keep_alive
                except HttpError as exc:
                    if not exc.counted:
                        self.service.reject(exc.principal, exc.code)
                    await self._json(exc.status, error_body(exc.code, exc.message), keep_alive=request.keep_alive)
                    keep = request.keep_alive
        except HttpError as exc:  # the request could not even be read: answer and close
            self.service.reject(None, exc.code)
            await self._json(exc.status, error_body(exc.code, exc.message), keep_alive=False)
        except (ConnectionClosed, ConnectionError, OSError, TimeoutError) as exc:
            log.debug("http connection dropped: %r", exc)
        except Exception:
            log.exception("http handler failed")
            await self._json(500, error_body("internal_error", "internal server error"), keep_alive=False)
        finally:
            self.service.connections["http"] -= 1
            self.writer.close()

    # ------------------------------------------------------------ routes

    def _principal(self, request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        principal = self.service.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise HttpError(401, "unauthorized", "send 'Authorization: Bearer <token>'")
        return principal

    async def _route(self, request: Request) -> bool:
        routes = {
            "/health": "GET",
            "/metrics": "GET",
            "/v1/models": "GET",
            "/v1/completions": "POST",
            "/admin/users": "GET",
        }
        if request.path not in routes:
            raise HttpError(404, "not_found", f"no route {request.path[:80]!r}")
        if request.method != routes[request.path]:
            raise HttpError(405, "bad_request", f"{request.path} accepts {routes[request.path]} only")
        if request.path == "/health":
            await self._json(200, {"status": "ok"}, request.keep_alive)
            return True
        principal = self._principal(request)
        if request.path == "/metrics":
            text = self.service.metrics.render(per_user=principal.is_admin)
            await self._send(200, "text/plain; version=0.0.4; charset=utf-8", text.encode(), request.keep_alive)
        elif request.path == "/admin/users":
            if not principal.is_admin:
                raise HttpError(403, "forbidden", "listing users needs the admin token")
            await self._json(200, {"users": self.service.users.user_names()}, request.keep_alive)
        elif request.path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "deepfim"} for m in self.service.fim_orders]
            await self._json(200, {"object": "list", "data": data}, request.keep_alive)
        else:
            return await self._completions(principal, request)
        return True

    async def _completions(self, principal: Principal, request: Request) -> bool:
        try:
            body = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, "bad_request", f"body is not JSON ({exc})") from None
        loop = asyncio.get_running_loop()
        try:  # tokenizing a long prompt takes a while: keep the event loop free meanwhile
            spec = await loop.run_in_executor(None, completion_spec, self.service, body)
            sink = _QueueSink()
            job = self.service.start(principal, spec, sink, "http")
        except ProtocolError as exc:
            raise HttpError(CODE_STATUS.get(exc.code, 400), exc.code, exc.message, principal) from None
        gone = asyncio.create_task(self.reader.read(1))  # EOF here means the client left
        try:
            if spec.stream:
                return await self._stream(job, sink, gone)
            event = await _next(sink, gone)
            while event is not None and event[0] == "text":  # only the result matters here
                event = await _next(sink, gone)
            if event is None:
                self.service.cancel(job)
                return False
            _, result, error = event
            if error is not None:
                raise HttpError(CODE_STATUS.get(error.code, 400), error.code, error.message, principal, counted=True)
            await self._json(200, response_body(job, result), request.keep_alive)
            return not gone.done()
        finally:
            gone.cancel()

    async def _stream(self, job: Job, sink: _QueueSink, gone: asyncio.Task) -> bool:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        try:
            self.writer.write(head.encode())
            while (event := await _next(sink, gone)) is not None:
                if event[0] == "text":
                    payload = text_chunk(job, event[1], event[2])
                elif event[2] is not None:
                    payload = error_body(event[2].code, event[2].message)
                else:
                    payload = finish_chunk(job, event[1])
                self.writer.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                if event[0] == "done":
                    self.writer.write(b"data: [DONE]\n\n")
                await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout_s)
                if event[0] == "done":
                    return False
        except (TimeoutError, ConnectionError, OSError):
            pass
        self.service.cancel(job)  # the client left mid-stream
        return False

    # ------------------------------------------------------------ responses

    async def _json(self, status: int, body: dict, keep_alive: bool) -> None:
        await self._send(status, "application/json", json.dumps(body).encode(), keep_alive)

    async def _send(self, status: int, content_type: str, data: bytes, keep_alive: bool) -> None:
        extra = "WWW-Authenticate: Bearer\r\n" if status == 401 else ""
        head = (
            f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(data)}\r\n{extra}"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout_s)


class _QueueSink:
    """Turns a job's callbacks into events for the response writer."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple] = asyncio.Queue()

    def on_text(self, job: Job, index: int, text: str) -> None:
        self.events.put_nowait(("text", index, text))

    def on_done(self, job: Job, result, error) -> None:
        self.events.put_nowait(("done", result, error))


async def _next(sink: _QueueSink, gone: asyncio.Task) -> tuple | None:
    """The job's next event, or None once the client has disconnected."""
    get = asyncio.ensure_future(sink.events.get())
    done, _ = await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
    if get in done:
        return get.result()
    get.cancel()
    return None
