"""Connection limits and pre-request timeouts for the team server's HTTP listener.

uvicorn parses HTTP (h11: keep-alive and pipelining as the RFC has them) but counts no
connections per address, gives a connection no deadline before its first request (an idle socket
stays forever) and leaves TLS handshakes to asyncio's 60 s default. `guarded_protocol` makes the
uvicorn protocol class that closes those holes: it is handed the raw TCP connection, so

* it counts connections from accept on, per client address and in all, and closes at once one
  that is over either limit (no TLS, no HTTP: it costs the server nothing);
* it runs the TLS handshake itself, with `tls_handshake_timeout_s`;
* every connection must deliver a complete request head within `request_head_timeout_s` of
  connecting, and of the first byte of each later request (a client trickling bytes, or holding
  a socket it never uses, is dropped; idle keep-alive between requests is `idle_timeout_s`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter

from uvicorn.protocols.http.h11_impl import H11Protocol

from deepfim.engine.server.limits import Limits

log = logging.getLogger(__name__)


class ConnectionGuard:
    """Counts open connections per client address; shared by every connection of one server."""

    def __init__(self, limits: Limits, ssl_context: ssl.SSLContext | None, on_change=None) -> None:
        self.limits, self.ssl_context = limits, ssl_context
        self.per_address: Counter[str] = Counter()
        self.total = 0
        self.refused = 0
        self.handshakes: set[asyncio.Task] = set()
        self._on_change = on_change

    def admit(self, address: str) -> bool:
        lim = self.limits
        if self.total >= lim.max_connections or self.per_address[address] >= lim.max_connections_per_address:
            self.refused += 1
            log.warning("refusing a connection from %s (%d from it, %d in all)", address, self.per_address[address],
                        self.total)  # fmt: skip
            return False
        self.per_address[address] += 1
        self.total += 1
        self._changed()
        return True

    def release(self, address: str) -> None:
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]
        self.total -= 1
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.total)

    def close(self) -> None:
        for task in list(self.handshakes):
            task.cancel()


def guarded_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """A uvicorn HTTP protocol class bound to `guard` (uvicorn builds one per connection)."""

    class GuardedH11Protocol(_GuardedH11Protocol):
        pass

    GuardedH11Protocol.guard = guard
    return GuardedH11Protocol


class _GuardedH11Protocol(H11Protocol):
    guard: ConnectionGuard

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._address: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._started = False
        self._early: list[bytes] = []  # bytes that came with the end of the TLS handshake
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        if not self.guard.admit(address):
            transport.abort()
            return
        self._address = address
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # uvicorn writes a response's head and body separately: without NODELAY the body waits
            # for the client's delayed ACK (44 ms a request here). KEEPALIVE notices peers that
            # vanish without a FIN (cable pulled, laptop asleep).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        ctx = self.guard.ssl_context
        if ctx is None:
            self._start(transport)
            return
        transport.pause_reading()  # no byte of the TLS handshake may reach the HTTP parser
        task = self.loop.create_task(self._handshake(transport, ctx))
        self.guard.handshakes.add(task)
        task.add_done_callback(self.guard.handshakes.discard)

    async def _handshake(self, raw: asyncio.Transport, ctx: ssl.SSLContext) -> None:
        timeout = self.guard.limits.tls_handshake_timeout_s
        try:
            tls = await self.loop.start_tls(raw, self, ctx, server_side=True, ssl_handshake_timeout=timeout)
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError, asyncio.CancelledError) as exc:
            log.debug("TLS handshake with %s failed: %r", self._address, exc)
            raw.abort()
            self._release()
            return
        if tls is None:  # the peer left during the handshake
            self._release()
            return
        self._start(tls)

    def _start(self, transport: asyncio.Transport) -> None:
        self._started = True
        super().connection_made(transport)
        self._arm_head_timer()
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.guard.limits.request_head_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("closing a connection from %s: no complete request head in time", self._address)
            self.transport.abort()

    def handle_events(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        super().handle_events()
        if waiting and self.cycle is not None and not self.cycle.response_complete:
            self._cancel_head_timer()  # a request head arrived: its handler runs now

    def data_received(self, data: bytes) -> None:
        if not self._started:  # TLS delivers what followed the handshake before start_tls returns
            self._early.append(data)
            return
        if (self.cycle is None or self.cycle.response_complete) and self._head_timer is None:
            self._arm_head_timer()  # the first byte of the next request: its head is due now
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._started:
            super().connection_lost(exc)
        self._release()

    def _release(self) -> None:
        if self._address is not None:
            self.guard.release(self._address)
            self._address = None
