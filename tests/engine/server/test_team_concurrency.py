"""Many clients, vanishing clients, cancellation, per-user limits and fair admission."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from team_support import BOTH, TEST_LIMITS

from deepfim.engine.api import CancelledError, CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server import frames
from deepfim.engine.server.auth import add_user


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _cancelled_count(team) -> float:
    return team.thread.call(lambda: team.thread.service.metrics.requests.get("msgpack", "instant", "cancelled"))


def test_sixteen_concurrent_clients_are_all_served(team):
    tokens = {f"dev{i:02d}": add_user(team.users_file, f"dev{i:02d}") for i in range(16)}
    team.tokens.update(tokens)
    barrier = threading.Barrier(16)

    def work(name: str) -> list[tuple[str, str, list[int]]]:
        client = team.client(name)
        tok = Tokenizer.from_file(client.tokenizer_path)
        barrier.wait(30)
        out = []
        for k in range(3):
            prompt = tok.encode(f"# {name} request {k}\ndef handler_{k}(event):\n")
            chunks: list[str] = []
            result = client.submit(
                CompletionRequest(prompt, SamplingParams(max_tokens=24)), lambda i, t, sink=chunks: sink.append(t)
            )
            out.append((result.result(60).text, "".join(chunks), prompt))
        return out

    with ThreadPoolExecutor(16) as pool:
        results = dict(zip(tokens, pool.map(work, tokens), strict=True))
    for name, runs in results.items():
        assert len(runs) == 3, name
        for text, streamed, prompt in runs:
            assert text and streamed == text
            if team.uses_double:
                assert text == (f"echo:{len(prompt)}:{sum(prompt) % 10007};" * 4)[:24]
    state = team.server_state()
    assert state["running"] == 0 and state["queued"] == 0
    assert all(v == 0 for v in state["inflight"].values())
    if team.uses_double:
        assert {r.namespace for r in team.backend.submitted} == {f"user:{n}" for n in tokens}
        assert team.backend.max_concurrent >= 8  # they really overlapped in the backend


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_client_vanishing_mid_stream_frees_its_request(team):
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    conn.send({"type": "complete", "id": "doomed", "prompt": list(range(40, 60)), "sampling": {"max_tokens": 250}})
    first = conn.recv()
    assert first["type"] == "chunk" and first["id"] == "doomed"
    conn.close()  # bob's editor crashed mid-stream
    _wait_for(lambda: _cancelled_count(team) == 1)
    state = team.server_state()
    assert state["running"] == 0 and state["inflight"]["bob"] == 0
    if team.uses_double:
        doomed = [r.request_id for r in team.backend.submitted if r.request_id.endswith("/doomed")]
        assert doomed and doomed[0] in team.backend.cancelled_ids
        assert team.backend.active == 0 and doomed[0] not in team.backend.finished_ids


def test_client_vanishing_while_queued_withdraws_its_request(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, max_backend_inflight=1))
    alice = team.raw()
    alice.hello(team.tokens["alice"])
    alice.send({"type": "complete", "id": "long", "prompt": [65] * 10, "sampling": {"max_tokens": 200}})
    assert alice.recv()["type"] == "chunk"  # alice holds the only backend slot
    bob = team.raw()
    bob.hello(team.tokens["bob"])
    bob.send({"type": "complete", "id": "waiting", "prompt": [66] * 10})
    _wait_for(lambda: team.server_state()["queued"] == 1)
    bob.close()
    _wait_for(lambda: team.server_state()["queued"] == 0)
    assert team.server_state()["inflight"]["bob"] == 0
    assert all(not r.namespace.endswith("bob") for r in getattr(team.backend, "submitted", []))


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_cancel_through_the_remote_handle_stops_the_engine(team):
    client = team.client("carol")
    tok = Tokenizer.from_file(client.tokenizer_path)
    got_text = threading.Event()
    # the tiny random model decodes all 250 tokens of this prompt (no EOS): only a cancel ends it early
    handle = client.submit(
        CompletionRequest(tok.encode("import os\n"), SamplingParams(max_tokens=250)), lambda i, t: got_text.set()
    )
    assert got_text.wait(10)
    handle.cancel()
    try:  # the engine either raises CancelledError or returns a result marked cancelled
        assert handle.result(30).cancelled
    except CancelledError:
        pass
    _wait_for(lambda: _cancelled_count(team) == 1)
    if team.uses_double:
        assert any(rid.startswith("carol/") for rid in team.backend.cancelled_ids)


def _replies(conn, n: int) -> dict[str, dict]:
    """The final reply (result or error) of `n` requests, by id; chunks are skipped."""
    out: dict[str, dict] = {}
    while len(out) < n:
        msg = conn.recv()
        if msg["type"] in ("result", "error"):
            out[msg["id"]] = msg
    return out


def test_rate_limit_per_user(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, requests_per_second=0.5, burst=2))
    bob, alice = team.raw(), team.raw()
    bob.hello(team.tokens["bob"])
    alice.hello(team.tokens["alice"])
    for i in range(3):
        bob.send({"type": "complete", "id": f"b{i}", "prompt": [70, 71], "sampling": {"max_tokens": 2}})
    replies = _replies(bob, 3)
    assert [replies[f"b{i}"]["type"] for i in range(3)] == ["result", "result", "error"]
    assert replies["b2"]["code"] == "rate_limited" and "retry in" in replies["b2"]["message"]
    alice.send({"type": "complete", "id": "a0", "prompt": [70, 71], "sampling": {"max_tokens": 2}})
    assert _replies(alice, 1)["a0"]["type"] == "result"  # bob's bucket is his alone


def test_inflight_and_prompt_length_limits_per_user(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, max_inflight=2))
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    for i in range(3):
        conn.send({"type": "complete", "id": f"r{i}", "prompt": [72] * 5, "sampling": {"max_tokens": 100}})
    too_long = frames.pack_prompt([73] * (TEST_LIMITS.max_prompt_tokens + 1))
    conn.send({"type": "complete", "id": "huge", "prompt": too_long})
    replies = _replies(conn, 4)
    assert replies["r2"]["code"] == "too_many_inflight"
    assert replies["huge"]["code"] == "prompt_too_long"
    assert replies["r0"]["type"] == replies["r1"]["type"] == "result"


def test_one_users_burst_does_not_starve_another(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, max_backend_inflight=1))
    alice, bob = team.raw(), team.raw()
    alice.hello(team.tokens["alice"])
    bob.hello(team.tokens["bob"])
    for i in range(6):
        alice.send({"type": "complete", "id": f"a{i}", "prompt": [80 + i] * 4, "sampling": {"max_tokens": 15}})
    _wait_for(lambda: team.server_state()["queued"] == 5)
    bob.send({"type": "complete", "id": "b0", "prompt": [90] * 4, "sampling": {"max_tokens": 15}})
    assert _replies(bob, 1)["b0"]["type"] == "result"
    alice_done = _replies(alice, 6)
    assert all(r["type"] == "result" for r in alice_done.values())
    if team.uses_double:
        order = [r.request_id.split("/")[-1] for r in team.backend.submitted]
        assert order.index("b0") == 1  # right after the request that was running, not after alice's backlog


def test_engine_failures_become_request_errors(team):
    if not team.uses_double:
        pytest.skip("needs the test double to make the engine fail on purpose")
    conn = team.raw()
    conn.hello(team.tokens["bob"])
    team.backend.fail_next = RuntimeError("CUDA out of memory")
    conn.send({"type": "complete", "id": "oom", "prompt": [1, 2, 3], "sampling": {"max_tokens": 50}})
    assert conn.recv()["type"] == "chunk"  # it started, and then the engine fails it
    team.backend.refuse_next = RuntimeError("engine is shutting down")
    conn.send({"type": "complete", "id": "refused", "prompt": [1, 2, 3]})
    replies = _replies(conn, 2)  # the oom error may arrive before or after the refusal
    assert (replies["oom"]["code"], replies["oom"]["message"]) == ("backend_error", "CUDA out of memory")
    assert (replies["refused"]["code"], replies["refused"]["message"]) == ("backend_error", "engine is shutting down")
    state = team.server_state()
    assert state["running"] == 0 and state["inflight"]["bob"] == 0
    conn.send({"type": "complete", "id": "after", "prompt": [1, 2, 3], "sampling": {"max_tokens": 2}})
    assert _replies(conn, 1)["after"]["type"] == "result"
    team.backend.refuse_next = ValueError("prompt of 3 tokens + max_tokens 9 exceeds 10")  # the engine's own check
    conn.send({"type": "complete", "id": "too-long", "prompt": [1, 2, 3], "sampling": {"max_tokens": 9}})
    assert _replies(conn, 1)["too-long"]["code"] == "bad_request"
