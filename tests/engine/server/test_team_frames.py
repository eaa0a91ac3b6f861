"""Bad frames: oversized, truncated, stalled, malformed. Each is refused cleanly, and a
client streaming on another connection at the same time is not disturbed."""

from __future__ import annotations

import dataclasses
import struct
import time

import msgpack
import pytest
from team_support import TEST_LIMITS, RawConn

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server import frames


class Bystander:
    """alice, streaming a long completion on her own connection while others misbehave."""

    def __init__(self, team) -> None:
        self.client = team.client("alice")
        tok = Tokenizer.from_file(self.client.tokenizer_path)
        self.chunks: list[str] = []
        req = CompletionRequest(tok.encode("def bystander():\n"), SamplingParams(max_tokens=150))
        self.handle = self.client.submit(req, lambda i, text: self.chunks.append(text))

    def check(self) -> None:
        result = self.handle.result(30)
        assert result.candidates[0].finish_reason in ("length", "eos", "stop")
        assert "".join(self.chunks) == result.text and result.text
        assert not self.handle.done() or result.timings.generated_tokens > 0


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_oversized_frame_is_refused_before_its_body_is_read(team):
    bystander = Bystander(team)
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    conn.send_raw(struct.pack(">I", TEST_LIMITS.max_frame_bytes + 1))  # header only: no body ever sent
    reply = conn.recv()
    assert (reply["code"], reply["fatal"]) == ("frame_too_large", True)
    assert conn.is_closed()
    bystander.check()
    assert team.raw().hello(team.tokens["bob"])["type"] == "welcome"  # the server still accepts clients


def test_truncated_frame_then_disconnect_harms_nobody(team):
    bystander = Bystander(team)
    before = team.server_state()["connections"]["msgpack"]
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    body = frames.encode({"type": "ping"})[4:]
    conn.send_raw(struct.pack(">I", len(body) + 50) + body)  # promises 50 more bytes, then leaves
    conn.close()
    bystander.check()
    deadline = time.monotonic() + 5
    while team.server_state()["connections"]["msgpack"] > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert team.server_state()["connections"]["msgpack"] == before
    assert team.backend.submitted[-1].namespace == "user:alice"  # bob's half frame never became a request


def test_stalled_half_frame_times_out(team):
    bystander = Bystander(team)
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    conn.send_raw(struct.pack(">I", 100) + b"\x85")  # then nothing (slowloris)
    reply = conn.recv()  # after frame_timeout_s (the figure: bench/bench_timeouts.py)
    assert reply["code"] == "timeout" and reply["fatal"]
    assert conn.is_closed()
    bystander.check()


def test_silent_connection_is_dropped_before_hello(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, hello_timeout_s=0.3))
    conn = team.raw()
    reply = conn.recv()
    assert reply["code"] == "timeout" and conn.is_closed()


MALFORMED = [
    (_frame(b""), "bad_msgpack"),
    (_frame(b"\xc1\xc1"), "bad_msgpack"),
    (_frame(msgpack.packb({"v": 1, "type": "ping"}) + b"\x00"), "bad_msgpack"),  # trailing bytes
    (_frame(msgpack.packb("just a string")), "bad_message"),
    (_frame(msgpack.packb({"type": "ping"})), "unsupported_version"),
    (frames.encode({"type": "fly"}), "unknown_type"),
    (frames.encode({"type": "result", "id": "x"}), "unknown_type"),  # server-only type
    (frames.encode({"type": "complete", "id": "r", "prompt": "text"}), "bad_request"),
    (frames.encode({"type": "complete", "id": "r", "prompt": [1, 1 << 40]}), "bad_request"),
    (frames.encode({"type": "complete", "id": "r", "prompt": [1], "sampling": {"n": "2"}}), "bad_request"),
    (frames.encode({"type": "complete", "prompt": [1]}), "bad_request"),
    (frames.encode({"type": "complete", "id": "r", "prompt": [1], "mode": "turbo"}), "unknown_mode"),
    (frames.encode({"type": "cancel"}), "bad_request"),
    (frames.encode({"type": "hello", "token": "again"}), "bad_request"),
]


@pytest.mark.parametrize(("frame", "code"), MALFORMED, ids=[c for _, c in MALFORMED])
def test_malformed_messages_get_an_error_and_the_connection_stays_up(team, frame, code):
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    conn.send_raw(frame)
    reply = conn.recv()
    assert (reply["type"], reply["code"], reply["fatal"]) == ("error", code, False)
    conn.send({"type": "ping", "nonce": 42})
    assert conn.recv() == {"v": 1, "type": "pong", "nonce": 42}
    assert team.backend.submitted == [] or not team.uses_double


def test_malformed_request_errors_carry_the_request_id(team):
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    conn.send({"type": "complete", "id": "mine-7", "prompt": [1, 2], "sampling": {"max_tokens": 100000}})
    reply = conn.recv()
    assert (reply["id"], reply["code"]) == ("mine-7", "bad_request") and "max_tokens" in reply["message"]


def test_a_stream_of_garbage_ends_the_connection(team):
    bystander = Bystander(team)
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    codes = []
    for _ in range(TEST_LIMITS.max_protocol_errors + 1):
        conn.send_raw(_frame(b"\xc1"))
        codes.append(conn.recv()["code"])
    assert codes[:-1] == ["bad_msgpack"] * TEST_LIMITS.max_protocol_errors
    assert codes[-1] == "too_many_errors" and conn.is_closed()
    bystander.check()


def test_http_side_rejects_malformed_requests(team):
    assert team.http("POST", "/v1/completions", team.tokens["bob"], raw_body=b"{not json")[0] == 400
    status, _, _ = team.http("POST", "/v1/completions", team.tokens["bob"], {"prompt": 5})
    assert status == 400
    status, _, _ = team.http("POST", "/v1/completions", team.tokens["bob"], {"prompt": "x", "model": "gpt-9"})
    assert status == 404
    status, _, _ = team.http("POST", "/v1/completions", team.tokens["bob"], {"prompt": "x", "temperature": 99})
    assert status == 400
    conn = RawConn(team.thread.http_port, team.cert)  # announces a huge body, sends none of it
    conn.send_raw(
        f"POST /v1/completions HTTP/1.1\r\nAuthorization: Bearer {team.tokens['bob']}\r\n"
        f"Content-Length: {TEST_LIMITS.max_frame_bytes + 1}\r\n\r\n".encode()
    )
    assert conn.sock.recv(100).startswith(b"HTTP/1.1 413 ")
    conn.close()
    assert team.http("GET", "/nope")[0] == 404 and team.http("DELETE", "/health")[0] == 405
