"""Authentication (real TLS on loopback): tokens, revocation, admin, TLS itself."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from deepfim.engine.server.auth import add_user, revoke_user
from deepfim.engine.server.client import RemoteBackend, RemoteBackendError
from deepfim.engine.server.tls import make_self_signed_cert

BODY = {"prompt": "def f(", "suffix": ")", "max_tokens": 4}


@pytest.mark.parametrize("token", [None, "", "dfm_000000000000_" + "a" * 43, "wrong", "x" * 5000])
def test_wrong_or_missing_tokens_are_refused_before_the_body_is_read(team, token):
    conn = team.raw()
    # announces a body it never sends: a 401 must come back anyway (the body is not read)
    conn.request("POST", "/v1/completions", token, headers={"Content-Length": "1000"})
    status, headers, body = conn.response()
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert team.backend.submitted == []


def test_a_near_miss_token_is_rejected(team):
    good = team.tokens["alice"]
    near = good[:-1] + ("A" if good[-1] != "A" else "B")
    assert team.http("GET", "/v1/session", near)[0] == 401
    status, _, data = team.http("GET", "/v1/session", good)
    assert status == 200 and json.loads(data)["user"] == "alice"


def test_remote_backend_with_wrong_token_raises_clearly(team):
    with pytest.raises(RemoteBackendError, match="refused the connection: send 'Authorization: Bearer"):
        RemoteBackend(team.address, "dfm_0123456789ab_" + "z" * 43, str(team.cert), cache_dir=team.tmp / "c")


def test_plain_tcp_to_the_tls_port_gets_nothing(team):
    with socket.create_connection(("127.0.0.1", team.port), timeout=5) as sock:
        sock.sendall(f"GET /v1/session HTTP/1.1\r\nAuthorization: Bearer {team.tokens['alice']}\r\n\r\n".encode())
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b""
        assert b"alice" not in data and b"200 OK" not in data  # at most a TLS alert, never an answer


def test_client_refuses_a_server_certificate_it_does_not_trust(team, tmp_path):
    other_cert, _ = make_self_signed_cert(tmp_path / "other", ["other.lan"])
    with pytest.raises(RemoteBackendError, match="CERTIFICATE_VERIFY_FAILED"):
        RemoteBackend(team.address, team.tokens["alice"], str(other_cert), cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="plain TCP is only allowed to a loopback"):
        RemoteBackend("10.1.2.3:7431", team.tokens["alice"], tls=False)


def test_new_users_replaced_and_revoked_tokens_take_effect_without_restart(team):
    dave = add_user(team.users_file, "dave")
    assert json.loads(team.http("GET", "/v1/session", dave)[2])["user"] == "dave"
    old = team.tokens["bob"]
    add_user(team.users_file, "bob", replace=True)
    assert team.http("GET", "/v1/session", old)[0] == 401
    conn = team.raw()  # an open keep-alive connection re-checks the token on every request
    conn.request("GET", "/v1/session", dave)
    assert conn.response()[0] == 200
    revoke_user(team.users_file, "dave")
    conn.request("GET", "/v1/session", dave)
    assert conn.response()[0] == 401


def test_admin_token_cannot_complete_but_can_list_users(team):
    session = json.loads(team.http("GET", "/v1/session", team.admin_token)[2])
    assert (session["user"], session["role"]) == ("admin", "admin")
    status, _, data = team.http("POST", "/v1/completions", team.admin_token, BODY)
    assert status == 403 and json.loads(data)["error"]["code"] == "forbidden"
    status, _, data = team.http("GET", "/admin/users", team.admin_token)
    assert status == 200 and json.loads(data)["users"] == ["alice", "bob", "carol"]
    assert team.http("GET", "/admin/users", team.tokens["alice"])[0] == 403


def test_every_route_but_health_demands_a_token(team):
    for method, path in [("GET", "/metrics"), ("GET", "/v1/models"), ("GET", "/v1/session"),
                         ("GET", "/v1/tokenizer"), ("GET", "/v1/stats"), ("POST", "/v1/completions")]:  # fmt: skip
        assert team.http(method, path, body=BODY if method == "POST" else None)[0] == 401, path
    assert team.http("POST", "/v1/completions", team.tokens["alice"], BODY)[0] == 200


def test_health_needs_no_token_and_says_whether_the_model_is_loaded(team):
    status, _, data = team.http("GET", "/health")
    assert status == 200 and json.loads(data) == {"status": "ok", "model_loaded": True}
    team.backend.close()  # the engine is gone: the server says so
    status, _, data = team.http("GET", "/health")
    assert status == 503 and json.loads(data) == {"status": "unavailable", "model_loaded": False}


def test_per_user_metrics_user_list_and_server_figures_only_for_admin(team):
    assert team.http("POST", "/v1/completions", team.tokens["bob"], {"prompt": "x = ", "max_tokens": 3})[0] == 200
    _, _, user_view = team.http("GET", "/metrics", team.tokens["alice"])
    _, _, admin_view = team.http("GET", "/metrics", team.admin_token)
    assert b"deepfim_requests_total" in user_view and b"bob" not in user_view
    assert b'deepfim_user_requests_total{outcome="ok",user="bob"} 1.0' in admin_view
    assert b"process_resident_memory_bytes" in user_view  # the process collector is registered
    bob = json.loads(team.http("GET", "/v1/stats", team.tokens["bob"])[2])
    alice = json.loads(team.http("GET", "/v1/stats", team.tokens["alice"])[2])
    assert bob["requests"]["ok"] == 1 and alice["requests"]["ok"] == 0
    assert "backend" not in bob and "server" not in bob and "checkpoints" not in json.dumps(bob)
    admin = json.loads(team.http("GET", "/v1/stats", team.admin_token)[2])
    assert "backend" in admin and admin["server"]["running"] == 0


def test_http_over_plain_tcp_is_not_answered(team):
    with socket.create_connection(("127.0.0.1", team.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, ssl.SSLError, TimeoutError):
            data = b""
        assert b"200 OK" not in data
