"""The team server's HTTP API as a Starlette app (run by uvicorn, see team_server.py).

Routes: ``GET /health`` (no token: is the model loaded), ``GET /metrics`` (Prometheus; any token,
per-user series only for the admin token), ``GET /v1/models``, ``GET /v1/session`` (what a client
needs: modes, FIM orders, tokenizer hash, limits), ``GET /v1/tokenizer``, ``GET /v1/stats`` (a
user's own figures; the admin's also the server's), ``POST /v1/completions`` (OpenAI-compatible,
text or token ids, optional SSE streaming), ``GET /admin/users`` (admin).

Order of checks on a completion: token (before a byte of the body is read), body size (from
Content-Length, then as it streams in, within `body_timeout_s`), JSON, fields, text size, and
only then tokenizing; a refused body closes the connection so its rest is never read. A client
that disconnects, or stops reading its stream for `write_timeout_s`, cancels its request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deepfim.engine.server.auth import Principal
from deepfim.engine.server.openai_compat import error_body, finish_chunk, parse_body, response_body, text_chunk
from deepfim.engine.server.requests import RequestError
from deepfim.engine.server.service import CompletionService, Job, access_log
from deepfim.engine.server.text_prompts import TextPrompts

log = logging.getLogger(__name__)


def error_response(exc: RequestError, close: bool = False) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if close:
        headers["Connection"] = "close"
    return JSONResponse(error_body(exc.code, exc.message), exc.status, headers)


class QueueSink:
    """Turns a job's callbacks into events for the response writer."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple] = asyncio.Queue()

    def on_text(self, job: Job, index: int, text: str, mean_logprob: float) -> None:
        self.events.put_nowait(("text", index, text, mean_logprob))

    def on_done(self, job: Job, result, error) -> None:
        self.events.put_nowait(("done", result, error))


async def _disconnected(receive) -> None:
    """Returns once the client has gone (the body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


@dataclass
class EventStream:
    """An SSE response for one job: text chunks, a heartbeat comment when idle, the final event."""

    service: CompletionService
    job: Job
    sink: QueueSink
    sent: list = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        lim = self.service.limits
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        gone = asyncio.ensure_future(_disconnected(receive))
        get = None
        try:
            await asyncio.wait_for(send({"type": "http.response.start", "status": 200, "headers": headers}),
                                   lim.write_timeout_s)  # fmt: skip
            while True:
                get = asyncio.ensure_future(self.sink.events.get())
                done, _ = await asyncio.wait({get, gone}, timeout=lim.heartbeat_s, return_when="FIRST_COMPLETED")
                if gone in done:
                    get.cancel()
                    return
                last = False
                if get not in done:
                    get.cancel()
                    payload = b": keep-alive\n\n"
                else:  # everything queued goes out in one write (tokens arrive faster than writes)
                    events = [get.result()]
                    while not self.sink.events.empty() and events[-1][0] == "text":
                        events.append(self.sink.events.get_nowait())
                    payload, last = self._events(events)
                await asyncio.wait_for(send({"type": "http.response.body", "body": payload, "more_body": True}),
                                       lim.write_timeout_s)  # fmt: skip
                if last:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
        except (TimeoutError, OSError, ClientDisconnect) as exc:
            log.info("dropping the stream of %s: %r", self.job.request.request_id, exc)
        finally:
            gone.cancel()
            if get is not None:
                get.cancel()
            self.service.cancel(self.job)  # no-op once it finished

    def _events(self, events: list[tuple]) -> tuple[bytes, bool]:
        """SSE bytes of queued events (consecutive text of one candidate merged), and whether the
        last is the end."""
        parts, texts = [], []  # texts: [(index, text, mean log-probability)] not yet written
        for event in events:
            if event[0] == "text":
                _, index, text, mean = event
                if texts and texts[-1][0] == index:
                    texts[-1] = (index, texts[-1][1] + text, mean)  # the mean is of all text so far
                else:
                    texts.append((index, text, mean))
                continue
            _, result, error = event
            body = error_body(error.code, error.message) if error is not None else finish_chunk(self.job, result)
            parts.append(json.dumps(body))
        chunks = [json.dumps(text_chunk(self.job, index, text, mean)) for index, text, mean in texts]
        out = b"".join(b"data: " + p.encode() + b"\n\n" for p in chunks + parts)
        last = events[-1][0] == "done"
        return out + (b"data: [DONE]\n\n" if last else b""), last


class TeamApp:
    """The routes around one `CompletionService`."""

    def __init__(self, service: CompletionService) -> None:
        self.service = service
        self.texts = TextPrompts(service.tokenizer, service.tokenizer_file)
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/session", self.session, methods=["GET"]),
            Route("/v1/tokenizer", self.tokenizer, methods=["GET"]),
            Route("/v1/stats", self.stats, methods=["GET"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/admin/users", self.users, methods=["GET"]),
        ]
        self.app = Starlette(routes=routes)
        self.app.add_exception_handler(404, self._not_found)
        self.app.add_exception_handler(405, self._not_allowed)

    async def _not_found(self, request: Request, exc) -> Response:
        error = RequestError("not_found", f"no route {request.url.path[:80]!r}")
        return self._log(request, None, error_response(error))

    async def _not_allowed(self, request: Request, exc) -> Response:
        message = f"{request.url.path} does not accept {request.method}"
        return self._log(request, None, error_response(RequestError("method_not_allowed", message)))

    # ------------------------------------------------------------ helpers

    def _principal(self, request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        principal = self.service.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise RequestError("unauthorized", "send 'Authorization: Bearer <token>'")
        return principal

    def _log(self, request: Request, principal: Principal | None, response: Response, **extra) -> Response:
        """The access-log line of a request that is not a completion the service logs itself."""
        fields = "".join(f" {k}={v}" for k, v in extra.items())
        access_log.info("user=%s route=%s status=%d%s", principal.name if principal else "-", request.url.path,
                        response.status_code, fields)  # fmt: skip
        return response

    async def _guarded(self, request: Request, handler, admin: bool = False) -> Response:
        principal = None
        try:
            principal = self._principal(request)
            if admin and not principal.is_admin:
                raise RequestError("forbidden", "this needs the admin token")
            return self._log(request, principal, await handler(principal))
        except RequestError as exc:
            self.service.reject(principal, exc.code)
            return self._log(request, principal, error_response(exc))

    # ------------------------------------------------------------ routes

    async def health(self, request: Request) -> Response:
        loaded = self.service.model_loaded()
        body = {"status": "ok" if loaded else "unavailable", "model_loaded": loaded}
        return self._log(request, None, JSONResponse(body, 200 if loaded else 503))

    async def metrics(self, request: Request) -> Response:
        async def handler(principal: Principal) -> Response:
            text = self.service.metrics.render(per_user=principal.is_admin)
            return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

        return await self._guarded(request, handler)

    async def models(self, request: Request) -> Response:
        async def handler(principal: Principal) -> Response:
            data = [{"id": m, "object": "model", "owned_by": "deepfim"} for m in self.service.fim_orders]
            return JSONResponse({"object": "list", "data": data})

        return await self._guarded(request, handler)

    async def session(self, request: Request) -> Response:
        async def handler(principal: Principal) -> Response:
            return JSONResponse(self.service.session(principal))

        return await self._guarded(request, handler)

    async def tokenizer(self, request: Request) -> Response:
        async def handler(principal: Principal) -> Response:
            headers = {"X-Tokenizer-SHA256": self.service.tokenizer_sha256}
            return Response(self.service.tokenizer_bytes, media_type="application/json", headers=headers)

        return await self._guarded(request, handler)

    async def stats(self, request: Request) -> Response:
        async def handler(principal: Principal) -> Response:
            if not principal.is_admin:
                return JSONResponse(self.service.user_stats(principal))
            # the backend may hold its lock for a whole step: keep the event loop free meanwhile
            data = await asyncio.get_running_loop().run_in_executor(None, self.service.user_stats, principal)
            return JSONResponse(json.loads(json.dumps(data, default=str)))

        return await self._guarded(request, handler)

    async def users(self, request: Request) -> Response:
        async def handler(principal: Principal) -> Response:
            return JSONResponse({"users": self.service.users.user_names()})

        return await self._guarded(request, handler, admin=True)

    async def completions(self, request: Request) -> Response:
        started = time.perf_counter()
        principal, mode = None, "-"
        try:
            principal = self._principal(request)
            body = await self._body(request)
            try:
                parsed = parse_body(json.loads(body), self.service.fim_orders, self.service.tokenizer.vocab_size)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RequestError("bad_request", f"body is not JSON ({exc})") from None
            mode = parsed.spec.mode
            if parsed.needs_tokenizing:
                size, limit = parsed.text_bytes(), self.service.limits.max_text_bytes
                if size > limit:
                    raise RequestError("prompt_too_long", f"prompt and suffix of {size} bytes exceed {limit}")
                order = self.service.fim_orders[mode][0]
                parsed.spec.prompt = await self.texts.fim_prompt(parsed.prefix, parsed.suffix, order)
            sink = QueueSink()
            job = self.service.start(principal, parsed.spec, sink)
        except RequestError as exc:
            self.service.reject(principal, exc.code)
            close = exc.code in ("body_too_large", "timeout")
            ms = (time.perf_counter() - started) * 1000
            return self._log(request, principal, error_response(exc, close), mode=mode, outcome="refused",
                             error=exc.code, ms=f"{ms:.0f}")  # fmt: skip
        if parsed.spec.stream:
            return EventStream(self.service, job, sink)
        return await self._wait(request, job, sink)

    async def _body(self, request: Request) -> bytes:
        limit = self.service.limits.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise RequestError("body_too_large", f"body of {length[:20]} bytes exceeds the limit of {limit}")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.service.limits.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise RequestError("body_too_large", f"body exceeds the limit of {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            limit = self.service.limits.body_timeout_s
            raise RequestError("timeout", f"body not received within {limit:g} s") from None
        except ClientDisconnect:
            raise RequestError("bad_request", "the client left before sending its body") from None
        return b"".join(chunks)

    async def _wait(self, request: Request, job: Job, sink: QueueSink) -> Response:
        """A plain (not streamed) answer; cancels the job if the client leaves first."""
        gone = asyncio.ensure_future(_disconnected(request.receive))
        get = None
        try:
            while True:
                get = asyncio.ensure_future(sink.events.get())
                done, _ = await asyncio.wait({get, gone}, return_when="FIRST_COMPLETED")
                if get not in done:
                    return Response(status_code=499)  # the client left: nobody reads this
                event = get.result()
                if event[0] == "done":
                    break
        finally:
            gone.cancel()
            if get is not None:
                get.cancel()
            self.service.cancel(job)  # no-op once it finished (the server may be stopping)
        _, result, error = event
        if error is not None:
            return error_response(error)
        return JSONResponse(response_body(job, result))

    def close(self) -> None:
        self.texts.close()
