"""The language server against a real team server process that goes down, hangs or starts late
(real `deepfim serve`, TLS on loopback, the embedded model): completions answer empty and the
editor gets one status message, never an error response or a traceback; `deepfim/status` answers
while the server hangs; completions come back, without a restart, once the server is back."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsp_support import Editor, inline_params, start_client, stop_client

from deepfim.engine.server.auth import add_user
from deepfim.engine.server.tls import client_context, make_self_signed_cert

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.slow]

SOURCE = "def add(a, b):\n    return \n"


class TeamServerProcess:
    """`deepfim serve` in a subprocess on a fixed port, started and stopped at will."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cert, self.key = make_self_signed_cert(tmp / "tls", ["localhost"])
        self.users = tmp / "users.json"
        self.token = add_user(self.users, "alice")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "DEEPFIM_CACHE_DIR": str(self.tmp / "server-cache"), "DEEPFIM_LOG_LEVEL": "WARNING"}
        cmd = [sys.executable, "-m", "deepfim.cli", "serve", "--port", str(self.port), "--users", str(self.users),
               "--cert", str(self.cert), "--key", str(self.key)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        line = ""
        while "deepfim team server:" not in line:
            assert self.proc.poll() is None and time.monotonic() < deadline, f"serve did not start: {line}"
            line = self.proc.stderr.readline()
        assert re.search(rf"https 127\.0\.0\.1:{self.port},", line)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no goodbye to anyone
        self.proc.wait(30)

    def ok_requests(self) -> int:
        import http.client

        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=client_context(self.cert), timeout=10)
        conn.request("GET", "/v1/stats", headers={"Authorization": f"Bearer {self.token}"})
        count = json.loads(conn.getresponse().read())["requests"]["ok"]
        conn.close()
        return count

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def team_server(tmp_path):
    server = TeamServerProcess(tmp_path)
    yield server
    server.close()


async def _lsp(server: TeamServerProcess, workspace: Path):
    options = {"server": server.address, "token": server.token, "tlsCa": str(server.cert), "debounceMs": 0}
    client = await start_client([sys.executable, "-m", "deepfim.cli", "lsp"], workspace, options)
    editor = Editor(client)
    uri = editor.open(workspace / "outage.py", SOURCE)
    return client, uri


async def _complete(client, uri):
    """One explicit inline completion (a model call each time); an error response would raise here."""
    return await client.text_document_inline_completion_async(inline_params(uri, 1, 11, invoked=True))


async def _until_served(client, uri, server: TeamServerProcess, before: int) -> None:
    """Completes until the team server has answered one of ours and the editor got its items (the
    client never restarts). The items matter: a request the server ran while it was stopped can
    count as answered after SIGCONT, with the language server still in its outage."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "completions did not come back"
        result = await _complete(client, uri)
        if server.ok_requests() > before and result.items:
            return
        await asyncio.sleep(0.1)


def _warnings(client) -> list[str]:
    return [m.message for m in client.messages if "DeepFIM:" in m.message]


async def test_server_down_at_start_then_up(team_server, workspace):
    client, uri = await _lsp(team_server, workspace)
    try:
        for _ in range(3):  # nothing listens: empty answers, not errors
            assert not (await _complete(client, uri)).items
        await asyncio.sleep(1.5)  # a few reconnect attempts
        assert len(_warnings(client)) == 1 and "could not start the engine" in _warnings(client)[0]
        status = await client.protocol.send_request_async("deepfim/status", {})
        assert status.last_error and "Traceback" not in status.last_error
        team_server.start()
        await _until_served(client, uri, team_server, 0)
        assert len(_warnings(client)) == 1  # one message for the whole outage
    finally:
        await stop_client(client)


async def test_hung_then_killed_then_restarted_server(team_server, workspace):
    team_server.start()
    client, uri = await _lsp(team_server, workspace)
    try:
        await _until_served(client, uri, team_server, 0)
        assert _warnings(client) == []
        os.kill(team_server.proc.pid, signal.SIGSTOP)  # alive, holding its sockets, answering nothing
        completion = asyncio.ensure_future(_complete(client, uri))
        status = await client.protocol.send_request_async("deepfim/status", {})
        assert not completion.done()  # status did not wait for the hung server's completion
        assert status.server == team_server.address
        assert not (await completion).items  # the call's deadline ended it: empty, not an error
        assert len(_warnings(client)) == 1 and "did not answer" in _warnings(client)[0]
        os.kill(team_server.proc.pid, signal.SIGCONT)
        await _until_served(client, uri, team_server, team_server.ok_requests())
        warned = len(_warnings(client))
        team_server.kill()  # kill -9: connections reset, nobody says goodbye
        for _ in range(3):
            assert not (await _complete(client, uri)).items
        assert len(_warnings(client)) == warned + 1 and "completion failed: team server" in _warnings(client)[-1]
        assert not any("Traceback" in m for m in _warnings(client))
        team_server.start()  # the same port, a new process (its counters start at 0)
        await _until_served(client, uri, team_server, 0)
        assert len(_warnings(client)) == warned + 1  # one message for the whole outage
    finally:
        await stop_client(client)
