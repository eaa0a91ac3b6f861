"""`RemoteBackend`: a `CompletionBackend` that completes on a LAN team server over HTTPS.

Callers cannot tell it from the in-process engine: `submit` returns a `CompletionHandle` whose
future completes from the server's SSE stream (``POST /v1/completions`` with the packed token
ids), `handle.cancel()` closes that stream (the server cancels the request when its client
leaves), and `tokenizer_path` points at the server's tokenizer.json, fetched once at connect
and cached by hash under `deepfim.env.cache_dir()`.

Every call has a deadline: connecting (`connect_timeout_s`), and the gap between two bytes of
an answer (`read_timeout_s`; the server sends a heartbeat every second while a request waits, so
only a hung server or a dead link goes quiet that long). A request that fails on the network
fails with `RemoteBackendError`; requests then fail at once for a short back-off (≤ 1 s), after
which the next one connects again: completions resume within about a second of the server's
return. `stats()` never waits for the network. All socket work happens on a private asyncio
loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

import httpx

from deepfim import env
from deepfim.engine.api import (
    CancelledError,
    Candidate,
    CompletionHandle,
    CompletionRequest,
    CompletionResult,
    Timings,
)
from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.engine.server.connect_errors import explain, not_a_team_server, refused
from deepfim.engine.server.tls import client_context, is_loopback

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (0.25, 0.5, 1.0)  # fail fast this long after a network failure, then try again
MAX_ERROR_BODY = 64 << 10


class RemoteBackendError(ConnectionError):
    """The server cannot be reached, refused the token, went quiet, or the connection was lost."""


class RemoteError(RuntimeError):
    """The server refused or failed one request; `code` is its error code (docs/team-server.md)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError names a bad address."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"server address {address!r} must look like host:port")
    return host, int(port)


class RemoteHandle(CompletionHandle):
    def __init__(self, request: CompletionRequest, backend: RemoteBackend) -> None:
        super().__init__(request)
        self._backend = backend
        self.task: asyncio.Task | None = None

    def cancel(self) -> None:
        super().cancel()
        self._backend._post(self._cancel_task)

    def _cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()


class RemoteBackend:
    """Client of `deepfim serve`. Connects in the constructor (raises RemoteBackendError)."""

    def __init__(
        self,
        address: str,
        token: str,
        ca_file: str | None = None,
        *,
        tls_ca: str | None = None,
        tls: bool = True,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 5.0,
        timeout_s: float | None = None,
        cache_dir: str | Path | None = None,
        local_address: str | None = None,
    ) -> None:
        """`ca_file` (alias `tls_ca`, the editor setting's name) is the certificate to trust.
        `timeout_s`, if given, sets both timeouts. `local_address`: the address to connect from
        (benchmarks give each simulated user its own, as on a real LAN)."""
        if not isinstance(token, str) or not token:
            raise ValueError(f"a user token is required to use the team server {address} (got {token!r})")
        if ca_file is not None and tls_ca is not None and ca_file != tls_ca:
            raise ValueError(f"give ca_file or tls_ca, not both ({ca_file!r} vs {tls_ca!r})")
        ca_file = ca_file if ca_file is not None else tls_ca
        self.address = address
        self.host, self.port = parse_address(address)
        if not tls and not is_loopback(self.host):
            raise ValueError(f"plain TCP is only allowed to a loopback address, not {self.host!r}")
        if timeout_s is not None:
            connect_timeout_s = read_timeout_s = timeout_s
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._base = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self._ssl = client_context(ca_file) if tls else None
        self._token = token
        self._local_address = local_address
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s)
        self._deadline = connect_timeout_s + read_timeout_s  # the longest a plain call may take
        self._cache = Path(cache_dir) if cache_dir else env.cache_dir() / "remote"
        self._failures, self._retry_at = 0, 0.0
        self._last_error: str | None = None
        self._stats: dict = {}
        self._stats_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self.welcome: dict = {}
        self.tokenizer_path = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="deepfim-remote", daemon=True)
        self._thread.start()
        self._client: httpx.AsyncClient = self._call(self._make_client(), self._deadline)
        try:
            self._call(self._connect(), self._deadline * 3)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ CompletionBackend

    def fim_orders(self, mode: str) -> tuple[str, ...]:
        modes = self.welcome.get("modes", {})
        if mode not in modes:
            raise ValueError(f"mode {mode!r} is not served by {self.address} (serving {sorted(modes)})")
        return tuple(modes[mode])

    def serving_profile(self, mode: str) -> dict:
        """The server's profile of the checkpoint serving `mode` (older servers: the defaults)."""
        found = self.welcome.get("profiles", {}).get(mode)
        return found if isinstance(found, dict) else ServingProfile.defaults(self.fim_orders(mode)).as_dict()

    def submit(self, request: CompletionRequest, on_text=None) -> CompletionHandle:
        handle = RemoteHandle(request, self)
        self._post(self._start, handle, on_text)
        return handle

    def stats(self) -> dict:
        """The last statistics the server sent (refreshed in the background): never blocks."""
        self._post(self._refresh_stats)
        return {
            "server": self.address,
            "user": self.welcome.get("user"),
            "connected": self._failures == 0,
            **({"error": self._last_error} if self._last_error else {}),
            **self._stats,
        }

    def healthy(self) -> bool:
        return self._failures == 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            except Exception:  # closing must not hang or fail on a dead server
                log.debug("closing the remote backend", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    # ------------------------------------------------------------ loop-side work

    def _post(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: the backend was closed
            pass

    def _call(self, coro, timeout: float):
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise RemoteBackendError(f"team server {self.address} did not answer within {timeout:g} s") from None

    async def _make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=httpx.AsyncHTTPTransport(
                verify=self._ssl if self._ssl is not None else False, local_address=self._local_address
            ),
        )

    async def _get(self, path: str) -> httpx.Response:
        try:
            response = await self._client.get(path)
        except httpx.HTTPError as exc:
            raise self._network_error(exc) from exc
        if response.status_code != 200:
            code, message = _error_of(response.status_code, response.content)
            if response.status_code in (401, 403):
                raise RemoteBackendError(refused(self.address, message, response.status_code))
            if path == "/v1/session" and code == str(response.status_code):  # not our JSON error: another service
                raise RemoteBackendError(not_a_team_server(self.address, self.port, response.status_code))
            raise RemoteError(code, message)
        return response

    async def _connect(self) -> None:
        session = (await self._get("/v1/session")).json()
        self.tokenizer_path = str(await self._tokenizer(session["tokenizer_sha256"]))
        self.welcome = session
        self._succeeded()

    async def _tokenizer(self, sha256: str) -> Path:
        path = self._cache / f"tokenizer-{sha256}.json"
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
        data = (await self._get("/v1/tokenizer")).content
        if hashlib.sha256(data).hexdigest() != sha256:
            raise RemoteBackendError(f"server {self.address} sent a tokenizer that does not match its hash")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")  # several clients may race here
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def _network_error(self, exc: Exception) -> RemoteBackendError:
        """A failure of the connection itself: back off, and say what happened in plain words."""
        if self.welcome or not isinstance(exc, httpx.TransportError):
            what = f"dropped the connection ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
            if isinstance(exc, httpx.TimeoutException):
                limit = self._timeout.read if isinstance(exc, httpx.ReadTimeout) else self._timeout.connect
                what = f"did not answer within {limit:g} s"
            self._last_error = f"team server {self.address} {what}"
        else:  # never connected: say why, and what to do
            self._last_error = explain(self.address, self.host, self.port, exc, self._timeout)
        self._retry_at = time.monotonic() + RETRY_DELAYS_S[min(self._failures, len(RETRY_DELAYS_S) - 1)]
        self._failures += 1
        return RemoteBackendError(self._last_error)

    def _succeeded(self) -> None:
        self._failures, self._last_error = 0, None

    def _start(self, handle: RemoteHandle, on_text) -> None:
        task = asyncio.ensure_future(self._complete(handle, on_text))
        handle.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _complete(self, handle: RemoteHandle, on_text) -> None:
        try:
            if handle.cancelled:
                raise asyncio.CancelledError
            wait = self._retry_at - time.monotonic()
            if self._failures and wait > 0:
                raise RemoteBackendError(f"{self._last_error}; retrying in {wait:.1f} s")
            handle.future.set_result(await self._stream(handle.request, on_text))
        except asyncio.CancelledError:
            if not handle.future.done():
                handle.future.set_exception(CancelledError("cancelled"))
        except httpx.HTTPError as exc:
            handle.future.set_exception(self._network_error(exc))
        except Exception as exc:  # RemoteError, RemoteBackendError, CancelledError from the server
            if not handle.future.done():
                handle.future.set_exception(exc)

    async def _stream(self, req: CompletionRequest, on_text) -> CompletionResult:
        body = {
            "prompt": req.prompt,
            "model": req.mode,
            "priority": req.priority.name.lower(),
            "stream": True,
            **{k: v for k, v in dataclasses.asdict(req.sampling).items() if v is not None},
        }
        body["stop"] = list(req.sampling.stop)
        if req.namespace.startswith("team:"):  # anything else: the server uses the user's own namespace
            body["namespace"] = req.namespace
        async with self._client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                code, message = _error_of(response.status_code, await _bounded(response))
                self._succeeded()  # the server answered: the network is fine
                raise CancelledError(message) if code == "cancelled" else RemoteError(code, message)
            self._succeeded()
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue  # blank separators and ": keep-alive" heartbeats
                data = line[len("data: ") :]
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    err = event["error"]
                    if err.get("code") == "cancelled":
                        raise CancelledError(err.get("message", "cancelled"))
                    raise RemoteError(err.get("code", "backend_error"), err.get("message", ""))
                if "deepfim" in event:
                    return _result(event["deepfim"])
                if on_text is not None:
                    for choice in event.get("choices", []):
                        try:
                            on_text(choice["index"], choice["text"], choice.get("mean_logprob"))
                        except Exception:
                            log.exception("on_text callback failed")
        raise RemoteBackendError(f"team server {self.address} ended the stream without a result")

    def _refresh_stats(self) -> None:
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.ensure_future(self._fetch_stats())

    async def _fetch_stats(self) -> None:
        try:
            self._stats = (await self._get("/v1/stats")).json()
        except Exception as exc:  # kept as the error shown with the last figures
            self._last_error = str(exc) or type(exc).__name__

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stats_task is not None:
            self._stats_task.cancel()
        await self._client.aclose()
        await self._loop.shutdown_asyncgens()  # streams cut short leave their line iterators open


async def _bounded(response: httpx.Response) -> bytes:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > MAX_ERROR_BODY:
            break
    return data


def _error_of(status: int, content: bytes) -> tuple[str, str]:
    try:
        err = json.loads(content)["error"]
        return str(err.get("code") or status), str(err.get("message") or "")
    except (ValueError, KeyError, TypeError):
        return str(status), content[:200].decode("utf-8", "replace")


def _fields(cls, data: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}  # newer servers may send more


def _result(ext: dict) -> CompletionResult:
    return CompletionResult(
        candidates=[Candidate(**_fields(Candidate, c)) for c in ext.get("candidates", [])],
        timings=Timings(**_fields(Timings, ext.get("timings", {}))),
        cancelled=bool(ext.get("cancelled")),
    )
