"""The language server's transports (stdio, TCP), reading through `framing.FrameReader`.

They replace pygls' reader loop, which trusted every Content-Length (a huge one ended the
server with MemoryError) and lost sync for good after one wrong length or malformed header.
Bytes are read in chunks of at most `READ_CHUNK`; what the reader frames goes to the
protocol's `receive` (`jsonrpc_protocol.py`) one message at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import BinaryIO

from pygls.io_ import StdoutWriter

from deepfim.lsp_server.framing import FrameReader

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 16


async def read_messages(read: Callable[[], Awaitable[bytes]], protocol, stop: threading.Event) -> None:
    """Feeds what `read` returns to `protocol.receive` until end of stream or `stop`."""
    reader = FrameReader()
    while not stop.is_set():
        data = await read()
        if not data:
            break
        for item in reader.feed(data):
            protocol.receive(item)
            await asyncio.sleep(0)  # let the handlers this message started run before the next
    for problem in reader.close():
        protocol.receive(problem)


class _StdinChunks:
    """Reads stdin on a daemon thread (a read blocked at exit must not keep the process
    alive) and hands chunks over one at a time (at most a few are buffered).

    A real file descriptor is read with `os.read`: a daemon thread blocked inside the
    BufferedReader holds its lock, and the interpreter aborts when it finalizes stdin.
    """

    def __init__(self, stdin: BinaryIO, loop: asyncio.AbstractEventLoop) -> None:
        try:
            fd = stdin.fileno()
            self._read = lambda n: os.read(fd, n)
        except (AttributeError, OSError, ValueError):  # not a file (tests pass BytesIO)
            self._read = getattr(stdin, "read1", stdin.read)
        self._loop = loop
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)
        threading.Thread(target=self._run, name="deepfim-stdin", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data = self._read(READ_CHUNK)
            except (OSError, ValueError):  # closed underneath us
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(self._queue.put(data), self._loop).result()
            except (RuntimeError, asyncio.CancelledError):  # the loop is gone
                return
            if not data:
                return

    async def read(self) -> bytes:
        return await self._queue.get()


def serve_stdio(server, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Run `server` (a pygls LanguageServer) on stdin/stdout until the client leaves."""
    stop = threading.Event()
    server.protocol.set_writer(StdoutWriter(stdout))

    async def main() -> None:
        chunks = _StdinChunks(stdin, asyncio.get_running_loop())
        await read_messages(chunks.read, server.protocol, stop)

    try:
        asyncio.run(main())
    except BrokenPipeError:
        logger.error("the connection to the client is lost; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop.set()
        server.shutdown()


def serve_tcp(server, host: str, port: int) -> None:
    """Run `server` for one TCP client at a time on host:port (debugging)."""
    stop = threading.Event()
    listening: list[asyncio.Server] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.protocol.set_writer(writer)
        await read_messages(lambda: reader.read(READ_CHUNK), server.protocol, stop)
        for listener in listening:
            listener.close()

    async def main() -> None:
        listener = await asyncio.start_server(connection, host, port)
        listening.append(listener)
        async with listener:
            await listener.serve_forever()

    try:
        asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop.set()
        server.shutdown()
