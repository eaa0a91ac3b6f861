"""A wrong `--server` fails with a message that names the address and says what to do next:
nothing listening, a port that accepts but is no team server (a silent service, another HTTP
service), a certificate the client does not trust, a refused token. Real sockets, real TLS,
a real team server."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from deepfim.cli import main
from deepfim.engine.server.client import RemoteBackend, RemoteBackendError
from deepfim.engine.server.connect_errors import DEFAULT_PORT, explain


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(address: str, ca, tmp_path, **kwargs) -> str:
    with pytest.raises(RemoteBackendError) as caught:
        RemoteBackend(address, "dfm_x_y", ca, cache_dir=tmp_path, **kwargs)
    return str(caught.value)


def test_nothing_listening_says_start_deepfim_serve(tmp_path, tls_files):
    address = f"127.0.0.1:{_closed_port()}"
    message = _connect(address, str(tls_files[0]), tmp_path)
    assert f"cannot connect to team server {address}: nothing is listening there" in message
    assert "`deepfim serve`" in message and str(DEFAULT_PORT) in message


def test_a_port_that_accepts_but_stays_silent_fails_at_the_read_timeout(tmp_path, tls_files):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        message = _connect(address, str(tls_files[0]), tmp_path, connect_timeout_s=0.5, read_timeout_s=0.5)
    assert f"{address}: no answer within 0.5 s" in message and "is `deepfim serve` running there" in message


def test_another_http_service_is_not_taken_for_a_team_server(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"<html>no such page</html>")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{server.server_port}"
        message = _connect(address, None, tmp_path, tls=False)
    finally:
        server.shutdown()
    assert f"{address}: it answered HTTP 404, not as a team server" in message


def test_an_untrusted_certificate_suggests_tls_ca(team, tmp_path):
    message = _connect(team.address, None, tmp_path)  # the system store does not know the self-signed cert
    assert f"{team.address}: its TLS certificate is not trusted" in message
    assert "--tls-ca FILE" in message and "tlsCa" in message


def test_a_certificate_for_another_name_suggests_make_cert():
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "Hostname mismatch, certificate is not valid for 'gpu.lan'."
    wrapped = httpx.ConnectError("handshake")
    wrapped.__cause__ = exc
    message = explain("gpu.lan:7431", "gpu.lan", 7431, wrapped, httpx.Timeout(3.0))
    assert "not made out to 'gpu.lan'" in message and "deepfim make-cert --host gpu.lan" in message


def test_deepfim_complete_prints_the_explanation(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "a.py").write_text("x = 1\n")
    address = f"127.0.0.1:{_closed_port()}"
    code = main(["complete", f"{tmp_path / 'a.py'}:1:1", "--workspace", str(tmp_path), "--server", address,
                 "--token", "dfm_x_y"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "nothing is listening there" in err and address in err


def test_a_refused_token_says_where_tokens_come_from(team, tmp_path):
    message = _connect(team.address, str(team.cert), tmp_path)
    assert "refused the connection: send 'Authorization: Bearer <token>'" in message
    assert "--token" in message and "deepfim users add NAME" in message
