"""Authentication on both sides of the team server (real TLS on loopback)."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from deepfim.engine.server import frames
from deepfim.engine.server.auth import add_user
from deepfim.engine.server.client import RemoteBackend, RemoteBackendError
from deepfim.engine.server.tls import make_self_signed_cert


def test_requests_before_hello_are_rejected_and_closed(team):
    conn = team.raw()
    conn.send({"type": "complete", "id": "r1", "prompt": [1, 2, 3]})
    reply = conn.recv()
    assert (reply["type"], reply["code"], reply["fatal"]) == ("error", "unauthorized", True)
    assert conn.is_closed()
    assert team.backend.submitted == []


@pytest.mark.parametrize(
    "token",
    [None, "", "dfm_000000000000_" + "a" * 43, "wrong", 12345, ["list"], "x" * 5000],
)
def test_wrong_or_missing_tokens_are_rejected(team, token):
    conn = team.raw()
    msg = {"type": "hello"} if token is None else {"type": "hello", "token": token}
    if isinstance(token, str) and len(token) > 4000:
        conn.send(msg)  # bigger than the pre-auth frame limit: the frame itself is refused
        assert conn.recv()["code"] == "frame_too_large"
    else:
        conn.send(msg)
        reply = conn.recv()
        assert (reply["type"], reply["code"]) == ("error", "unauthorized")
    assert conn.is_closed()


def test_a_near_miss_token_is_rejected(team):
    good = team.tokens["alice"]
    near = good[:-1] + ("A" if good[-1] != "A" else "B")
    conn = team.raw()
    assert conn.hello(near)["code"] == "unauthorized"
    assert team.raw().hello(good)["type"] == "welcome"


def test_remote_backend_with_wrong_token_raises_clearly(team):
    with pytest.raises(RemoteBackendError, match="refused the connection: unknown or missing token"):
        RemoteBackend(team.address, "dfm_0123456789ab_" + "z" * 43, str(team.cert), cache_dir=team.tmp / "c")


def test_plain_tcp_to_the_tls_port_gets_nothing(team):
    with socket.create_connection(("127.0.0.1", team.port), timeout=5) as sock:
        sock.sendall(frames.encode({"type": "hello", "token": team.tokens["alice"]}))
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            data = b""
        assert b"welcome" not in data  # at most a TLS alert, never a protocol answer


def test_client_refuses_a_server_certificate_it_does_not_trust(team, tmp_path):
    other_cert, _ = make_self_signed_cert(tmp_path / "other", ["other.lan"])
    with pytest.raises(RemoteBackendError, match="CERTIFICATE_VERIFY_FAILED"):
        RemoteBackend(team.address, team.tokens["alice"], str(other_cert), cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="plain TCP is only allowed to a loopback"):
        RemoteBackend("10.1.2.3:7431", team.tokens["alice"], tls=False)


def test_new_users_and_replaced_tokens_take_effect_without_restart(team):
    dave = add_user(team.users_file, "dave")
    assert team.raw().hello(dave)["user"] == "dave"
    old = team.tokens["bob"]
    add_user(team.users_file, "bob", replace=True)
    assert team.raw().hello(old)["code"] == "unauthorized"


def test_a_revoked_token_closes_the_connections_it_opened(team):
    conn = team.raw()
    conn.hello(team.tokens["carol"])
    conn.send({"type": "ping", "nonce": 1})
    assert conn.recv()["type"] == "pong"
    new = add_user(team.users_file, "carol", replace=True)  # re-keyed: the old token is revoked
    conn.send({"type": "ping", "nonce": 2})
    answer = conn.recv()
    assert (answer["code"], answer["fatal"]) == ("unauthorized", True) and conn.is_closed()
    assert team.raw().hello(new)["user"] == "carol"


def test_admin_token_cannot_complete_but_can_list_users(team):
    conn = team.raw()
    welcome = conn.hello(team.admin_token)
    assert (welcome["user"], welcome["role"]) == ("admin", "admin")
    conn.send({"type": "complete", "id": "a1", "prompt": [1, 2]})
    assert conn.recv()["code"] == "forbidden"
    conn.send({"type": "list_users"})
    assert conn.recv()["users"] == ["alice", "bob", "carol"]
    user = team.raw()
    user.hello(team.tokens["alice"])
    user.send({"type": "list_users"})
    assert user.recv()["code"] == "forbidden"


def test_http_side_demands_a_user_token(team):
    body = {"prompt": "def f(", "suffix": ")", "max_tokens": 4}
    for token in (None, "nope", team.tokens["alice"] + "x"):
        status, headers, data = team.http("POST", "/v1/completions", token, body)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(data)["error"]["code"] == "unauthorized"
    status, _, _ = team.http("POST", "/v1/completions", team.tokens["alice"], body)
    assert status == 200
    assert team.http("POST", "/v1/completions", team.admin_token, body)[0] == 403
    assert team.http("GET", "/metrics")[0] == 401


def test_health_needs_no_token_and_says_nothing_more(team):
    status, _, data = team.http("GET", "/health")
    assert status == 200 and json.loads(data) == {"status": "ok"}


def test_per_user_metrics_and_user_list_only_for_admin(team):
    assert team.http("POST", "/v1/completions", team.tokens["bob"], {"prompt": "x = ", "max_tokens": 3})[0] == 200
    _, _, user_view = team.http("GET", "/metrics", team.tokens["alice"])
    _, _, admin_view = team.http("GET", "/metrics", team.admin_token)
    assert b"deepfim_requests_total" in user_view and b"bob" not in user_view
    assert b'deepfim_user_requests_total{user="bob",outcome="ok"} 1' in admin_view
    assert team.http("GET", "/admin/users", team.tokens["alice"])[0] == 403
    status, _, data = team.http("GET", "/admin/users", team.admin_token)
    assert status == 200 and json.loads(data)["users"] == ["alice", "bob", "carol"]


def test_http_over_plain_tcp_is_not_answered(team):
    with socket.create_connection(("127.0.0.1", team.thread.http_port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        assert b"200 OK" not in data
