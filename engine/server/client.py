"""`RemoteBackend`: a `CompletionBackend` that completes on a LAN team server.

Callers cannot tell it from the in-process engine: `submit` returns a `CompletionHandle`
whose future completes from the streamed frames, `handle.cancel()` sends a cancel frame,
and `tokenizer_path` points at the server's tokenizer.json, fetched once at connect and
cached by hash under `deepfim.env.cache_dir()`.

All socket work happens on a private asyncio loop thread (one TLS object is never touched
by two threads). A lost connection fails the requests it carried with `RemoteBackendError`;
the next `submit` reconnects (with back-off while the server stays unreachable).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import itertools
import logging
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path

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
from deepfim.engine.server import frames
from deepfim.engine.server.connect_errors import explain, refused
from deepfim.engine.server.frames import ConnectionClosed, ProtocolError
from deepfim.engine.server.tls import client_context, is_loopback

log = logging.getLogger(__name__)
MAX_INCOMING_FRAME = 256 << 20  # the tokenizer frame is the big one (a few MiB)
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)
HANDSHAKE_TIMEOUT_S = 3.0  # TCP connect + TLS + hello -> welcome; a team server answers in milliseconds


class RemoteBackendError(ConnectionError):
    """The server cannot be reached, refused the token, or the connection was lost."""


class RemoteError(RuntimeError):
    """The server refused or failed one request; `code` is the protocol's error code."""

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
        self.wire_id: str | None = None

    def cancel(self) -> None:
        super().cancel()
        self._backend._post(self._backend._send_cancel, self)


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
        timeout_s: float = 10.0,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        cache_dir: str | Path | None = None,
    ) -> None:
        """`ca_file` (alias `tls_ca`, the editor setting's name) is the certificate to trust;
        connecting up to the server's welcome may take `handshake_timeout_s`."""
        if not isinstance(token, str) or not token:
            raise ValueError(f"a user token is required to use the team server {address} (got {token!r})")
        if ca_file is not None and tls_ca is not None and ca_file != tls_ca:
            raise ValueError(f"give ca_file or tls_ca, not both ({ca_file!r} vs {tls_ca!r})")
        ca_file = ca_file if ca_file is not None else tls_ca
        self.address = address
        self.host, self.port = parse_address(address)
        if not tls and not is_loopback(self.host):
            raise ValueError(f"plain TCP is only allowed to a loopback address, not {self.host!r}")
        self._ssl = client_context(ca_file) if tls else None
        self._token, self._timeout, self._handshake_timeout = token, timeout_s, handshake_timeout_s
        self._cache = Path(cache_dir) if cache_dir else env.cache_dir() / "remote"
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[RemoteHandle, object]] = {}
        self._replies: dict[str, deque[asyncio.Future]] = {}  # reply type → waiters, oldest first
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._connecting: asyncio.Task | None = None
        self._failures, self._retry_at = 0, 0.0
        self._closed = False
        self.welcome: dict = {}
        self.tokenizer_path = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="deepfim-remote", daemon=True)
        self._thread.start()
        try:
            self._call(self._ensure_connected(), timeout_s * 3)
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
        self._post(lambda: asyncio.ensure_future(self._submit(handle, on_text)))
        return handle

    def stats(self) -> dict:
        base = {
            "server": self.address,
            "user": self.welcome.get("user"),
            "connected": self._writer is not None,
        }
        try:
            return {**base, **self._call(self._request_reply({"type": "stats"}, "stats"), self._timeout)["data"]}
        except Exception as exc:
            return {**base, "error": str(exc)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
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
            future.cancel()  # do not leave a waiter behind to swallow a later reply
            raise

    async def _ensure_connected(self) -> None:
        if self._writer is not None:
            return
        if self._connecting is None:  # one attempt at a time, shared by concurrent submits
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(lambda _: setattr(self, "_connecting", None))
        await asyncio.shield(self._connecting)

    async def _connect(self) -> None:
        if time.monotonic() < self._retry_at:
            raise RemoteBackendError(
                f"server {self.address} unreachable; retrying in {self._retry_at - time.monotonic():.1f} s"
            )
        # A team server answers `hello` at once: something that accepts the connection but
        # stays silent is not one (another service, the HTTP port), so fail fast and say so.
        step, waited, writer = "connect", min(self._timeout, self._handshake_timeout), None
        try:
            async with asyncio.timeout(waited):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
                if self._ssl is not None:
                    step = "tls"
                    await writer.start_tls(self._ssl, server_hostname=self.host)
                step = "hello"
                writer.write(frames.encode({"type": "hello", "token": self._token, "client": "deepfim"}))
                welcome = await self._read(reader)
            if welcome.get("type") != "welcome":
                raise RemoteBackendError(refused(self.address, welcome))
            step, waited = "tokenizer", self._timeout
            async with asyncio.timeout(waited):
                self.tokenizer_path = str(await self._tokenizer(reader, writer, welcome["tokenizer_sha256"]))
        except RemoteBackendError:
            self._abandon(writer)
            raise
        except (OSError, TimeoutError, ConnectionClosed, ProtocolError, KeyError) as exc:
            self._abandon(writer)
            raise RemoteBackendError(explain(self.address, self.host, self.port, step, exc, waited)) from exc
        self.welcome, self._writer, self._failures = welcome, writer, 0
        self._reader_task = asyncio.ensure_future(self._read_loop(reader, writer))

    def _abandon(self, writer: asyncio.StreamWriter | None) -> None:
        """A failed connection attempt: close its socket, back off before the next."""
        if writer is not None:
            writer.close()
        self._backoff()

    def _backoff(self) -> None:
        self._retry_at = time.monotonic() + RETRY_DELAYS_S[min(self._failures, len(RETRY_DELAYS_S) - 1)]
        self._failures += 1

    async def _read(self, reader: asyncio.StreamReader) -> dict:
        body = await frames.read_frame(reader, MAX_INCOMING_FRAME, self._timeout, self._timeout)
        return frames.decode(body)

    async def _tokenizer(self, reader, writer, sha256: str) -> Path:
        path = self._cache / f"tokenizer-{sha256}.json"
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
        writer.write(frames.encode({"type": "get_tokenizer"}))
        reply = await self._read(reader)
        data = reply.get("data")
        if (
            reply.get("type") != "tokenizer"
            or not isinstance(data, bytes)
            or hashlib.sha256(data).hexdigest() != sha256
        ):
            raise RemoteBackendError(f"server {self.address} sent a bad tokenizer frame")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")  # several clients may race here
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    async def _submit(self, handle: RemoteHandle, on_text) -> None:
        if handle.cancelled:
            handle.future.set_exception(CancelledError("cancelled before it was sent"))
            return
        try:
            await self._ensure_connected()
        except RemoteBackendError as exc:
            handle.future.set_exception(exc)
            return
        if self._writer is None:  # connected, then dropped before we got to write
            handle.future.set_exception(RemoteBackendError(f"lost connection to team server {self.address}"))
            return
        req = handle.request
        handle.wire_id = str(next(self._ids))
        self._pending[handle.wire_id] = (handle, on_text)
        msg = {
            "type": "complete",
            "id": handle.wire_id,
            "prompt": frames.pack_prompt(req.prompt),
            "mode": req.mode,
            "priority": req.priority.name.lower(),
            "sampling": dataclasses.asdict(req.sampling),
        }
        msg["sampling"]["stop"] = list(req.sampling.stop)
        if req.namespace.startswith("team:"):  # anything else: the server uses the user's own namespace
            msg["namespace"] = req.namespace
        self._writer.write(frames.encode(msg))
        if handle.cancelled:  # cancelled while connecting
            self._send_cancel(handle)

    def _send_cancel(self, handle: RemoteHandle) -> None:
        if self._writer is not None and handle.wire_id in self._pending:
            self._writer.write(frames.encode({"type": "cancel", "id": handle.wire_id}))

    async def _request_reply(self, msg: dict, reply_type: str) -> dict:
        await self._ensure_connected()
        if self._writer is None:
            raise RemoteBackendError(f"lost connection to team server {self.address}")
        reply = self._loop.create_future()
        self._replies.setdefault(reply_type, deque()).append(reply)
        self._writer.write(frames.encode(msg))
        return await reply

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason = "server closed the connection"
        try:
            while True:
                self._dispatch(frames.decode(await frames.read_frame(reader, MAX_INCOMING_FRAME, 1e9, 60.0)))
        except asyncio.CancelledError:
            reason = "backend closed"
        except RemoteBackendError as exc:
            reason = str(exc)
        except (ConnectionClosed, ProtocolError, OSError) as exc:
            reason = str(exc) or repr(exc)
        self._drop(writer, reason)

    def _drop(self, writer: asyncio.StreamWriter, reason: str) -> None:
        if self._writer is writer:
            self._writer = None
        writer.transport.abort()
        error = RemoteBackendError(f"lost connection to team server {self.address}: {reason}")
        pending, self._pending = self._pending, {}
        for handle, _ in pending.values():
            if not handle.future.done():
                handle.future.set_exception(error)
        waiters, self._replies = self._replies, {}
        for queue in waiters.values():
            for waiter in queue:
                if not waiter.done():
                    waiter.set_exception(error)

    def _dispatch(self, msg: dict) -> None:
        kind, rid = msg.get("type"), msg.get("id")
        if kind == "chunk":
            entry = self._pending.get(rid)
            if entry is not None and entry[1] is not None:
                try:
                    entry[1](msg["index"], msg["text"])
                except Exception:
                    log.exception("on_text callback failed for %s", rid)
        elif kind == "result" and rid in self._pending:
            handle, _ = self._pending.pop(rid)
            handle.future.set_result(_result(msg))
        elif kind == "error" and rid in self._pending:
            handle, _ = self._pending.pop(rid)
            code, text = msg.get("code"), msg.get("message", "")
            handle.future.set_exception(CancelledError(text) if code == "cancelled" else RemoteError(code, text))
        elif kind == "error" and msg.get("fatal"):
            raise RemoteBackendError(f"server closed the connection: {msg.get('code')}: {msg.get('message')}")
        elif self._replies.get(kind):
            waiters = self._replies[kind]
            while waiters and waiters[0].done():  # callers that gave up waiting
                waiters.popleft()
            if waiters:
                waiters.popleft().set_result(msg)
        else:
            log.debug("ignoring %s frame for %r", kind, rid)

    async def _shutdown(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)


def _fields(cls, data: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}  # newer servers may send more


def _result(msg: dict) -> CompletionResult:
    return CompletionResult(
        candidates=[Candidate(**_fields(Candidate, c)) for c in msg.get("candidates", [])],
        timings=Timings(**_fields(Timings, msg.get("timings", {}))),
        cancelled=bool(msg.get("cancelled")),
    )
