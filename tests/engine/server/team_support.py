"""Fixtures for the team-server tests: a real HTTPS server (uvicorn, TLS) on loopback, real clients.

BACKEND picks what the server wraps by default. "double" is the test double in
teamserver_double.py; "local" is the real in-process engine (`LocalBackend`) on a tiny
random-weight checkpoint written once per session (real model code, prefix cache, scheduler,
cancellation; no trained weights needed). Switching everything is this one line; single
tests run on both with `@pytest.mark.parametrize("team", BOTH, indirect=True)`. Assertions
that rely on the double's recall behaviour check `team.uses_double`.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest
from teamserver_double import PrefixCacheEchoBackend
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from deepfim.engine.model.tokenizer import ALL_SPECIALS
from deepfim.engine.server.auth import UserStore, add_user
from deepfim.engine.server.client import RemoteBackend
from deepfim.engine.server.limits import Limits
from deepfim.engine.server.team_server import ServerThread
from deepfim.engine.server.tls import client_context, make_self_signed_cert, server_context

BACKEND = "double"  # "double" | "local"
BOTH = ["double", "local"]

TEST_LIMITS = Limits(
    max_body_bytes=1 << 20,
    max_text_bytes=256 << 10,
    max_prompt_tokens=20_000,
    max_new_tokens=1024,  # a long generation outlasts noticing a client that left, even on a busy machine
    requests_per_second=200.0,
    burst=400,
    max_inflight=8,
    max_backend_inflight=32,
    max_connections_per_address=64,
    request_head_timeout_s=2.0,
    body_timeout_s=1.0,
    write_timeout_s=5.0,
)


def write_byte_tokenizer(path: Path) -> Path:
    """A byte-level tokenizer.json: one token per byte, plus DeepSeek's special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(ALL_SPECIALS))
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory) -> Path:
    return write_byte_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"), ["deepfim-test.lan"])


@pytest.fixture(scope="session")
def engine_checkpoint(tmp_path_factory, tokenizer_file) -> Path:
    """A tiny V4 checkpoint with random weights and the byte tokenizer (vocab 512 ≥ 268 ids)."""
    import shutil

    from deepfim.engine.model.config import tiny_args
    from deepfim.engine.model.loader import save_checkpoint
    from deepfim.engine.model.transformer import Transformer, init_weights

    out = tmp_path_factory.mktemp("tiny-ckpt")
    save_checkpoint(init_weights(Transformer(tiny_args(vocab_size=512)), seed=0), out)
    shutil.copy(tokenizer_file, out / "tokenizer.json")
    return out


def make_backend(tokenizer_file: Path, kind: str = BACKEND, checkpoint: Path | None = None):
    if kind == "local":
        from deepfim.engine.serving.local_backend import LocalBackend

        return LocalBackend(checkpoint)
    return PrefixCacheEchoBackend(str(tokenizer_file))


class RawConn:
    """A hand-driven TLS connection (or plain TCP, `tls=False`) for sending exact bytes."""

    def __init__(self, port: int, ca: Path, timeout: float = 5.0, source: str = "127.0.0.1", tls: bool = True) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.sock = client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        self.sock.settimeout(timeout)
        self._buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, token: str | None = None, body: bytes | None = None,
                headers: dict | None = None) -> None:  # fmt: skip
        """Sends one HTTP/1.1 request (keep-alive)."""
        lines = [f"{method} {path} HTTP/1.1", "Host: deepfim-test.lan"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("server closed the connection")
        self._buf += data

    def response(self) -> tuple[int, dict, bytes]:
        """The next complete response (Content-Length or chunked) on this connection."""
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self._buf) < n:
                self._fill()
            body, self._buf = self._buf[:n], self._buf[n:]
        else:  # chunked
            body = b""
            while True:
                while b"\r\n" not in self._buf:
                    self._fill()
                size_line, self._buf = self._buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self._buf) < size + 2:
                    self._fill()
                body, self._buf = body + self._buf[:size], self._buf[size + 2 :]
                if size == 0:
                    break
        return int(status_line.split(" ")[1]), headers, body

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            self._fill()
        return self._buf

    def is_closed(self) -> bool:
        """True when the server has closed the connection (reads EOF or a reset)."""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()


class Team:
    """A running server with three users (alice, bob, carol), an admin and helpers."""

    def __init__(
        self,
        tmp: Path,
        tokenizer_file: Path,
        tls_files,
        limits: Limits,
        shared=("core",),
        backend: str = BACKEND,
        checkpoint: Path | None = None,
    ):
        self.tmp, self.cert = tmp, tls_files[0]
        self.users_file = tmp / "users.json"
        self.tokens = {name: add_user(self.users_file, name) for name in ("alice", "bob", "carol")}
        self.admin_token = "dfm_admin_" + "x" * 40
        self.backend = make_backend(tokenizer_file, backend, checkpoint)
        self.uses_double = isinstance(self.backend, PrefixCacheEchoBackend)
        self.tokenizer_file = tokenizer_file
        self.thread = ServerThread(
            self.backend,
            UserStore(self.users_file, self.admin_token),
            host="127.0.0.1",
            ssl_context=server_context(*tls_files),
            limits=limits,
            shared_namespaces=tuple(shared),
        ).start()
        self._clients: list[RemoteBackend] = []
        self._raws: list[RawConn] = []

    @property
    def port(self) -> int:
        return self.thread.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, user: str, **kwargs) -> RemoteBackend:
        token = self.tokens.get(user, user)
        c = RemoteBackend(self.address, token, str(self.cert), cache_dir=self.tmp / "client-cache", **kwargs)
        self._clients.append(c)
        return c

    def raw(self, **kwargs) -> RawConn:
        conn = RawConn(self.port, self.cert, **kwargs)
        self._raws.append(conn)
        return conn

    def http(self, method: str, path: str, token: str | None = None, body=None, raw_body: bytes | None = None):
        """(status, headers, body bytes) of one HTTPS request."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=client_context(self.cert))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        out = (resp.status, resp.headers, resp.read())  # headers: case-insensitive
        conn.close()
        return out

    def server_state(self) -> dict:
        """Counters read on the server loop (no races with the server's own updates)."""
        svc = self.thread.service

        def read():
            return {
                "running": svc.admission.running,
                "queued": svc.admission.queued,
                "inflight": {n: st.inflight for n, st in svc._user_state.items()},
                "outcomes": {n: dict(st.outcomes) for n, st in svc._user_state.items()},
                "connections": svc.connections,
            }

        return self.thread.call(read)

    def cancelled(self, user: str) -> int:
        return self.server_state()["outcomes"].get(user, {}).get("cancelled", 0)

    def close(self) -> None:
        for c in self._clients:
            c.close()
        for r in self._raws:
            r.close()
        self.thread.stop()
        self.backend.close()


@pytest.fixture
def make_team(request, tmp_path, tokenizer_file, tls_files):
    teams: list[Team] = []

    def make(limits: Limits = TEST_LIMITS, backend: str = BACKEND, **kwargs) -> Team:
        checkpoint = request.getfixturevalue("engine_checkpoint") if backend == "local" else None
        team = Team(tmp_path / f"team{len(teams)}", tokenizer_file, tls_files, limits, backend=backend,
                    checkpoint=checkpoint, **kwargs)  # fmt: skip
        teams.append(team)
        return team

    yield make
    for team in teams:
        team.close()


@pytest.fixture
def team(request, make_team) -> Team:
    """A running team server; `indirect` parametrization picks the backend ("double"/"local")."""
    return make_team(backend=getattr(request, "param", BACKEND))
