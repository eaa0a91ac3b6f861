"""Attacks on the listener, each closed (real sockets and TLS on loopback): connections held
before authentication, per-address lockout, oversized or stalled bodies, slow request heads,
malformed requests, keep-alive and pipelining. A client streaming on another connection at
the same time is never disturbed, and the server keeps accepting clients."""

from __future__ import annotations

import dataclasses
import json
import socket
import time

import pytest
from team_support import TEST_LIMITS, RawConn

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.prompt_format import build_fim_prompt
from deepfim.engine.model.tokenizer import Tokenizer


class Bystander:
    """alice, streaming a long completion on her own connection while others misbehave."""

    def __init__(self, team) -> None:
        self.client = team.client("alice")
        tok = Tokenizer.from_file(self.client.tokenizer_path)
        self.chunks: list[str] = []
        req = CompletionRequest(tok.encode("def bystander():\n"), SamplingParams(max_tokens=150))
        self.handle = self.client.submit(req, lambda i, text, mean: self.chunks.append(text))

    def check(self) -> None:
        result = self.handle.result(30)
        assert result.candidates[0].finish_reason in ("length", "eos", "stop")
        assert "".join(self.chunks) == result.text and result.text


def _served(team, **raw) -> bool:
    conn = team.raw(**raw)
    conn.request("GET", "/v1/session", team.tokens["bob"])
    return conn.response()[0] == 200


def _wait_closed(conn: RawConn, timeout: float) -> bool:
    conn.sock.settimeout(timeout)
    return conn.is_closed()


def test_idle_connections_before_any_request_are_dropped_and_do_not_lock_others_out(make_team):
    limits = dataclasses.replace(TEST_LIMITS, request_head_timeout_s=0.5, tls_handshake_timeout_s=0.5,
                                 max_connections_per_address=4)  # fmt: skip
    team = make_team(limits)
    bystander = Bystander(team)  # from 127.0.0.1 too: one of that address's 4
    idle_tls = [team.raw() for _ in range(2)]  # TLS done, then silence
    idle_tcp = [socket.create_connection(("127.0.0.1", team.port), timeout=5) for _ in range(1)]  # no TLS at all
    refused = RawConn(team.port, team.cert, tls=False)  # the 5th from this address: closed at once
    assert _wait_closed(refused, 2)
    assert _served(team, source="127.0.0.2")  # another address is not locked out meanwhile
    assert all(_wait_closed(c, 5) for c in idle_tls)  # the head timeout dropped them
    for sock in idle_tcp:
        sock.settimeout(5)
        assert sock.recv(1) == b""  # the handshake timeout dropped it
    assert _served(team)  # and the address can connect again
    bystander.check()


def test_oversized_bodies_are_refused_before_they_are_read(team):
    bystander = Bystander(team)
    conn = team.raw()  # announces a body over the limit and sends none of it
    conn.request("POST", "/v1/completions", team.tokens["bob"],
                 headers={"Content-Length": str(TEST_LIMITS.max_body_bytes + 1)})  # fmt: skip
    status, headers, body = conn.response()
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
    assert headers["connection"] == "close" and conn.is_closed()
    chunked = team.raw()  # no length given: counted as it streams in
    chunked.request("POST", "/v1/completions", team.tokens["bob"], headers={"Transfer-Encoding": "chunked"})
    piece = b"x" * (256 << 10)
    try:
        for _ in range(TEST_LIMITS.max_body_bytes // len(piece) + 2):
            chunked.send_raw(b"%x\r\n%s\r\n" % (len(piece), piece))
    except OSError:
        pass  # the server may close before the last pieces arrive
    assert chunked.response()[0] == 413
    assert team.backend.submitted[-1].namespace == "user:alice"  # nothing of bob's became a request
    bystander.check()
    assert _served(team)


def test_text_over_the_text_limit_is_refused_before_tokenizing(team):
    bystander = Bystander(team)
    texts = team.thread.server.app.texts
    before = texts.calls
    huge = "x = 1\n" * (TEST_LIMITS.max_text_bytes // 6 + 1)
    status, _, body = team.http("POST", "/v1/completions", team.tokens["bob"], {"prompt": huge, "max_tokens": 2})
    assert status == 413 and json.loads(body)["error"]["code"] == "prompt_too_long"
    assert texts.calls == before  # refused on its size: the tokenizer never saw it
    bystander.check()


def test_big_text_prompts_are_tokenized_off_the_servers_threads_and_exactly(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, max_prompt_tokens=200_000))
    prefix = "def f(x):\n    return x + 1\n" * 3000  # 81K chars: past what is tokenized in-process
    status, _, _ = team.http("POST", "/v1/completions", team.tokens["bob"], {"prompt": prefix, "suffix": "\n",
                                                                             "max_tokens": 2})  # fmt: skip
    assert status == 200
    assert team.thread.server.app.texts.worker_calls == 1
    tok = Tokenizer.from_file(team.backend.tokenizer_path)
    assert team.backend.submitted[-1].prompt == build_fim_prompt(tok, prefix, "\n").ids


def test_truncated_body_then_disconnect_harms_nobody(team):
    bystander = Bystander(team)
    conn = team.raw()
    conn.request("POST", "/v1/completions", team.tokens["bob"], headers={"Content-Length": "500"})
    conn.send_raw(b'{"prompt": "x"')  # promises 500 bytes, sends 14, leaves
    conn.close()
    bystander.check()
    deadline = time.monotonic() + 5
    while team.server_state()["connections"] > 1 and time.monotonic() < deadline:  # alice's own
        time.sleep(0.02)
    assert team.server_state()["connections"] <= 1
    assert all(r.namespace == "user:alice" for r in team.backend.submitted)


def test_stalled_body_times_out(team):
    bystander = Bystander(team)
    conn = team.raw()
    conn.request("POST", "/v1/completions", team.tokens["bob"], headers={"Content-Length": "100"})
    conn.send_raw(b'{"pro')  # then nothing (slowloris on the body)
    status, headers, body = conn.response()
    assert status == 408 and json.loads(body)["error"]["code"] == "timeout" and conn.is_closed()
    bystander.check()


def test_a_request_head_trickled_byte_by_byte_is_cut_off(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, request_head_timeout_s=0.5))
    conn = team.raw()
    conn.request("GET", "/health")
    assert conn.response()[0] == 200  # a keep-alive connection, idle between requests: allowed
    time.sleep(0.8)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
    closed = False
    for byte in head + b"a" * 40:
        try:
            conn.send_raw(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(0.05)
    assert closed or conn.is_closed()


MALFORMED = [
    ({"raw": b"{not json"}, 400, "bad_request"),
    ({"body": {"prompt": 5}}, 400, "bad_request"),
    ({"body": {"prompt": "x", "model": "gpt-9"}}, 404, "unknown_mode"),
    ({"body": {"prompt": "x", "temperature": 99}}, 400, "bad_request"),
    ({"body": {"prompt": [1, 1 << 40]}}, 400, "bad_request"),
    ({"body": {"prompt": [1, "2"]}}, 400, "bad_request"),
    ({"body": {"prompt": [1, 2], "suffix": "x"}}, 400, "bad_request"),
    ({"body": {"prompt": "x", "n": "2"}}, 400, "bad_request"),
    ({"body": {"prompt": "x", "priority": "urgent"}}, 400, "bad_request"),
    ({"body": {"prompt": "x", "logprobs": 5, "echo": True, "best_of": 3}}, 400, "not_implemented"),
    ({"body": {"prompt": "x", "max_tokens": 100000}}, 400, "bad_request"),
]


@pytest.mark.parametrize(("request_", "status", "code"), MALFORMED, ids=[c for _, _, c in MALFORMED])
def test_malformed_requests_get_an_error_and_the_connection_stays_up(team, request_, status, code):
    conn = team.raw()
    body = request_.get("raw", json.dumps(request_.get("body")).encode())
    conn.request("POST", "/v1/completions", team.tokens["bob"], body)
    got, _, answer = conn.response()
    assert (got, json.loads(answer)["error"]["code"]) == (status, code)
    conn.request("GET", "/health")
    assert conn.response()[0] == 200
    assert team.backend.submitted == []


def test_unimplemented_openai_parameters_are_named(team):
    body = {"prompt": "x", "logprobs": 5, "echo": True, "best_of": 3, "logit_bias": {"1": 2}}
    message = json.loads(team.http("POST", "/v1/completions", team.tokens["bob"], body)[2])["error"]["message"]
    assert message == "not implemented by this server: best_of, echo, logit_bias, logprobs"
    ok = {"prompt": "x", "max_tokens": 2, "logprobs": None, "echo": False, "best_of": 1}  # the defaults are fine
    assert team.http("POST", "/v1/completions", team.tokens["bob"], ok)[0] == 200


def test_garbage_instead_of_http_is_answered_400_and_closed(team):
    conn = team.raw()
    conn.send_raw(b"\x16\x03\x01 hello?\r\n\r\n")
    assert conn.read_until(b"\r\n").startswith(b"HTTP/1.1 400 ") and conn.is_closed()
    assert team.http("GET", "/nope")[0] == 404 and team.http("DELETE", "/health")[0] == 405


def test_keep_alive_answers_every_one_of_300_requests(team):
    conn = team.raw()
    body = json.dumps({"prompt": [65, 66], "max_tokens": 2}).encode()
    statuses = []
    for i in range(300):
        if i % 3:
            conn.request("GET", "/health")
        else:
            conn.request("POST", "/v1/completions", team.tokens["bob"], body)
        statuses.append(conn.response()[0])
    assert statuses == [200] * 300
    assert len(team.backend.submitted) == 100


def test_pipelined_requests_are_all_answered_in_order(team):
    conn = team.raw()
    requests = b""
    for i in range(5):
        body = json.dumps({"prompt": [70 + i] * 3, "max_tokens": 4}).encode()
        requests += (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {team.tokens['bob']}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    requests += b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    conn.send_raw(requests)  # six requests in one write
    answers = [conn.response() for _ in range(6)]
    assert [status for status, _, _ in answers] == [200] * 6
    prompts = [json.loads(body)["usage"]["prompt_tokens"] for _, _, body in answers[:5]]
    assert prompts == [3] * 5 and json.loads(answers[5][2])["status"] == "ok"
    assert [r.prompt for r in team.backend.submitted] == [[70 + i] * 3 for i in range(5)]
