"""The team server: the HTTP API (http_app.py) on uvicorn, behind the connection guard, around one
`CompletionService`.

`TeamServer` runs on an asyncio loop; `ServerThread` runs one on a background thread (what
`deepfim serve`, the tests and the benchmarks use: uvicorn then leaves the process's signals to
the caller).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading

import uvicorn

from deepfim.engine.api import CompletionBackend
from deepfim.engine.server.auth import UserStore
from deepfim.engine.server.connection_guard import ConnectionGuard, guarded_protocol
from deepfim.engine.server.http_app import TeamApp
from deepfim.engine.server.limits import Limits
from deepfim.engine.server.service import CompletionService
from deepfim.engine.server.tls import is_loopback

log = logging.getLogger(__name__)
MAX_HEADER_BYTES = 16 << 10  # a request head bigger than this is answered 400 by h11
SHUTDOWN_GRACE_S = 1  # streams still running when the server stops get this long, then are cut


class TeamServer:
    def __init__(
        self,
        backend: CompletionBackend,
        users: UserStore,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        shared_namespaces: tuple[str, ...] = (),
    ) -> None:
        """`port` 0 picks a free port. `ssl_context` None means plain TCP, refused unless `host` is
        a loopback address."""
        if ssl_context is None and not is_loopback(host):
            raise ValueError(f"refusing to serve without TLS on non-loopback host {host!r}")
        self.service = CompletionService(backend, users, limits, shared_namespaces)
        self.app = TeamApp(self.service)
        self.guard = ConnectionGuard(self.service.limits, ssl_context, self._connections_changed)
        self.host, self._port, self.ssl_context = host, port, ssl_context
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    def _connections_changed(self, total: int) -> None:
        self.service.connections = total

    async def start(self) -> None:
        self.service.loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self._port), family=family, backlog=1024)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app.app,
            http=guarded_protocol(self.guard),
            lifespan="off",
            log_config=None,
            access_log=False,  # the service writes one line per request itself
            server_header=False,
            timeout_keep_alive=max(1, int(self.service.limits.idle_timeout_s)),
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what startup raised
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("team server on %s:%s, TLS %s", self.host, self.port, "on" if self.ssl_context else "OFF")

    async def close(self) -> None:
        """Stops listening; running streams get a short grace, then their connections are cut
        (which cancels their requests)."""
        if self._server is None:
            return
        for connection in list(self._server.server_state.connections):  # idle keep-alive: nothing to wait for
            if connection.transport is not None and (connection.cycle is None or connection.cycle.response_complete):
                connection.transport.abort()
        self._server.should_exit = True
        self.guard.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), SHUTDOWN_GRACE_S + 3)
        except TimeoutError:
            self._task.cancel()
        for connection in list(self._server.server_state.connections):
            if connection.transport is not None:
                connection.transport.abort()
        self.app.close()
        self._server = None


class ServerThread:
    """A `TeamServer` on its own event loop thread. Use as a context manager."""

    def __init__(self, backend: CompletionBackend, users: UserStore, **kwargs) -> None:
        self.server = TeamServer(backend, users, **kwargs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="deepfim-team-server", daemon=True)
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.server.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def call(self, fn, *args, timeout: float = 10.0):
        """Runs `fn(*args)` on the server loop and returns its result (to read server state safely)."""

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    @property
    def service(self) -> CompletionService:
        return self.server.service

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
