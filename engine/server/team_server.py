"""The team server: a msgpack listener and an HTTP listener around one `CompletionService`.

`TeamServer` runs on an asyncio loop (`deepfim serve` owns the loop: start, wait for a
signal, close); `ServerThread` runs
one in a background thread, for tests, benchmarks and embedding.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading

from deepfim.engine.api import CompletionBackend
from deepfim.engine.server.auth import UserStore
from deepfim.engine.server.connection import Connection
from deepfim.engine.server.frames import encode
from deepfim.engine.server.http_server import MAX_HEADER_BYTES, HttpConnection
from deepfim.engine.server.limits import Limits
from deepfim.engine.server.service import CompletionService
from deepfim.engine.server.tls import is_loopback

log = logging.getLogger(__name__)
TLS_HANDSHAKE_TIMEOUT_S = 10.0


class TeamServer:
    def __init__(
        self,
        backend: CompletionBackend,
        users: UserStore,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        http_port: int | None = 0,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        shared_namespaces: tuple[str, ...] = (),
    ) -> None:
        """`port`/`http_port` 0 picks free ports; `http_port` None disables HTTP.

        `ssl_context` None means plain TCP, refused unless `host` is a loopback address.
        """
        if ssl_context is None and not is_loopback(host):
            raise ValueError(f"refusing to serve without TLS on non-loopback host {host!r}")
        self.service = CompletionService(backend, users, limits, shared_namespaces)
        self.host, self.ssl_context = host, ssl_context
        self._ports = (port, http_port)
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self.port: int | None = None
        self.http_port: int | None = None

    async def start(self) -> None:
        self.service.loop = asyncio.get_running_loop()
        tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT_S} if self.ssl_context else {}
        msgpack_server = await asyncio.start_server(self._on_msgpack, self.host, self._ports[0], **tls)
        self._servers.append(msgpack_server)
        self.port = msgpack_server.sockets[0].getsockname()[1]
        if self._ports[1] is not None:
            http = await asyncio.start_server(self._on_http, self.host, self._ports[1], limit=MAX_HEADER_BYTES, **tls)
            self._servers.append(http)
            self.http_port = http.sockets[0].getsockname()[1]
        log.info(
            "team server on %s:%s (msgpack) and %s (http), TLS %s",
            self.host,
            self.port,
            self.http_port,
            "on" if self.ssl_context else "OFF",
        )

    async def close(self) -> None:
        """Stops listening, ends open connections (which cancels their requests)."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _admit_socket(self, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # notice peers that vanish without a FIN (cable pulled, laptop asleep)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if sum(self.service.connections.values()) >= self.service.limits.max_connections:
            log.warning("refusing a connection: %d open", sum(self.service.connections.values()))
            return False
        return True

    async def _on_msgpack(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit_socket(writer):
            writer.write(
                encode(
                    {
                        "type": "error",
                        "id": None,
                        "code": "too_many_connections",
                        "message": "server connection limit reached",
                        "fatal": True,
                    }
                )
            )
            writer.close()
            return
        await self._track(Connection(self.service, reader, writer).run())

    async def _on_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit_socket(writer):
            writer.close()
            return
        await self._track(HttpConnection(self.service, reader, writer).run())

    async def _track(self, coro) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await coro
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection handler crashed")  # contained: other clients carry on
        finally:
            self._tasks.discard(task)


class ServerThread:
    """A `TeamServer` on its own event loop thread. Use as a context manager."""

    def __init__(self, backend: CompletionBackend, users: UserStore, **kwargs) -> None:
        self.server = TeamServer(backend, users, **kwargs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="deepfim-team-server", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.close())
        self.loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
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

    @property
    def http_port(self) -> int | None:
        return self.server.http_port

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
