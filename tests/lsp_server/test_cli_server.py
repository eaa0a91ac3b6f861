"""The real `deepfim lsp` command: stdio is JSON-RPC only, --tcp serves the same protocol,
and a backend that cannot start is reported instead of crashing the server."""

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest
from lsp_support import capabilities
from lsprotocol import types
from pygls.lsp.client import LanguageClient

pytestmark = pytest.mark.asyncio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _status_when_loaded(client: LanguageClient):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = await client.protocol.send_request_async("deepfim/status", {})
        if not status.loading:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("the engine never finished loading")


async def test_tcp_server_with_a_checkpoint_that_cannot_load(tmp_path):
    port = _free_port()
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp_path / "cache")}
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "deepfim.cli", "lsp", "--tcp", str(port), "--log-file", str(log)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = LanguageClient("test", "1")
    try:
        for _ in range(200):
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        messages: list[str] = []
        client.feature(types.WINDOW_SHOW_MESSAGE)(lambda params: messages.append(params.message))
        empty_checkpoint = tmp_path / "empty-checkpoint"
        empty_checkpoint.mkdir()
        await client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities(), initialization_options={"checkpoint": str(empty_checkpoint)}
            )
        )
        client.initialized(types.InitializedParams())
        status = await _status_when_loaded(client)
        assert status.last_error and "engine" in status.last_error
        assert status.models.instant == "empty-checkpoint"
        assert any("could not start the engine" in m for m in messages)
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert out == b""  # --tcp: nothing on stdout
    assert "could not start the engine" in log.read_text() or "starting the engine failed" in log.read_text()
