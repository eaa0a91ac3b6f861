"""Many clients, vanishing clients, cancellation, per-user limits and fair admission."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from team_support import BOTH, TEST_LIMITS

from deepfim.engine.api import CancelledError, CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server.auth import add_user
from deepfim.engine.server.client import RemoteError


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _start_stream(team, user: str, prompt, max_tokens: int = 250):
    """A raw HTTPS connection with a streaming completion running; returns it after the first event."""
    conn = team.raw()
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": True}).encode()
    conn.request("POST", "/v1/completions", team.tokens[user], body)
    assert conn.read_until(b"data: ").startswith(b"HTTP/1.1 200")
    return conn


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
                CompletionRequest(prompt, SamplingParams(max_tokens=24)), lambda i, t, m, sink=chunks: sink.append(t)
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
    if team.uses_double:
        team.backend.token_delay_s = 0.02  # 250 tokens take 5 s: the client leaves long before the end
    conn = _start_stream(team, "bob", list(range(40, 60)))
    conn.close()  # bob's editor crashed mid-stream
    _wait_for(lambda: team.cancelled("bob") == 1)
    state = team.server_state()
    assert state["running"] == 0 and state["inflight"]["bob"] == 0
    if team.uses_double:
        doomed = [r.request_id for r in team.backend.submitted if r.namespace == "user:bob"]
        assert doomed and doomed[0] in team.backend.cancelled_ids
        assert team.backend.active == 0 and doomed[0] not in team.backend.finished_ids


def test_client_vanishing_while_queued_withdraws_its_request(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, max_backend_inflight=1))
    team.backend.token_delay_s = 0.02
    alice = _start_stream(team, "alice", [65] * 10, max_tokens=200)  # alice holds the only backend slot
    bob = team.raw()
    body = json.dumps({"prompt": [66] * 10, "max_tokens": 5, "stream": True}).encode()
    bob.request("POST", "/v1/completions", team.tokens["bob"], body)
    _wait_for(lambda: team.server_state()["queued"] == 1)
    bob.close()
    _wait_for(lambda: team.server_state()["queued"] == 0)
    assert team.server_state()["inflight"]["bob"] == 0
    assert all(not r.namespace.endswith("bob") for r in team.backend.submitted)
    alice.close()


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_cancel_through_the_remote_handle_stops_the_engine(team):
    if team.uses_double:
        team.backend.token_delay_s = 0.02
    client = team.client("carol")
    tok = Tokenizer.from_file(client.tokenizer_path)
    got_text = threading.Event()
    # the tiny random model decodes all 250 tokens of this prompt (no EOS): only a cancel ends it early
    handle = client.submit(
        CompletionRequest(tok.encode("import os\n"), SamplingParams(max_tokens=250)), lambda i, t, m: got_text.set()
    )
    assert got_text.wait(10)
    handle.cancel()
    with pytest.raises(CancelledError):
        handle.result(30)
    _wait_for(lambda: team.cancelled("carol") == 1)
    if team.uses_double:
        assert any(rid.startswith("carol/") for rid in team.backend.cancelled_ids)


def _complete(team, user: str, prompt, max_tokens: int = 2):
    status, _, data = team.http("POST", "/v1/completions", team.tokens[user],
                                {"prompt": prompt, "max_tokens": max_tokens})  # fmt: skip
    return status, json.loads(data)


def test_rate_limit_per_user(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, requests_per_second=0.5, burst=2))
    answers = [_complete(team, "bob", [70, 71]) for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 429]
    assert answers[2][1]["error"]["code"] == "rate_limited" and "retry in" in answers[2][1]["error"]["message"]
    assert _complete(team, "alice", [70, 71])[0] == 200  # bob's bucket is his alone


def test_inflight_and_prompt_length_limits_per_user(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, max_inflight=2))
    team.backend.token_delay_s = 0.02
    streams = [_start_stream(team, "bob", [72] * 5, max_tokens=250) for _ in range(2)]  # 5 s each
    status, body = _complete(team, "bob", [72] * 5)
    assert (status, body["error"]["code"]) == (429, "too_many_inflight")
    for conn in streams:
        conn.close()
    _wait_for(lambda: team.server_state()["inflight"]["bob"] == 0)
    status, body = _complete(team, "bob", [73] * (TEST_LIMITS.max_prompt_tokens + 1))
    assert (status, body["error"]["code"]) == (413, "prompt_too_long")
    assert _complete(team, "bob", [72] * 5)[0] == 200


def test_one_users_burst_does_not_starve_another(make_team):
    team = make_team(dataclasses.replace(TEST_LIMITS, max_backend_inflight=1))
    team.backend.token_delay_s = 0.02
    client_a, client_b = team.client("alice"), team.client("bob")
    long = client_a.submit(CompletionRequest([79] * 4, SamplingParams(max_tokens=250)))  # holds the only slot
    _wait_for(lambda: team.server_state()["running"] == 1)
    alice = [client_a.submit(CompletionRequest([80 + i] * 4, SamplingParams(max_tokens=3))) for i in range(5)]
    _wait_for(lambda: team.server_state()["queued"] == 5)
    bob = client_b.submit(CompletionRequest([90] * 4, SamplingParams(max_tokens=3)))
    _wait_for(lambda: team.server_state()["queued"] == 6)
    long.cancel()  # the slot frees: who goes next is the admission's choice alone
    assert bob.result(30).text
    assert all(h.result(30).text for h in alice)
    order = [r.namespace for r in team.backend.submitted]
    assert order.index("user:bob") == 1  # right after the request that was running, not after alice's backlog


def test_engine_failures_become_request_errors(team):
    client = team.client("bob")
    team.backend.fail_next = RuntimeError("CUDA out of memory")
    started = threading.Event()
    oom = client.submit(CompletionRequest([1, 2, 3], SamplingParams(max_tokens=50)), lambda i, t, m: started.set())
    with pytest.raises(RemoteError) as info:
        oom.result(30)
    assert (info.value.code, info.value.message) == ("backend_error", "CUDA out of memory")
    assert started.is_set()  # it started, and then the engine failed it
    team.backend.refuse_next = RuntimeError("engine is shutting down")
    with pytest.raises(RemoteError) as info:
        client.submit(CompletionRequest([1, 2, 3])).result(30)
    assert (info.value.code, info.value.message) == ("backend_error", "engine is shutting down")
    state = team.server_state()
    assert state["running"] == 0 and state["inflight"]["bob"] == 0
    assert client.submit(CompletionRequest([1, 2, 3], SamplingParams(max_tokens=2))).result(30).text
    team.backend.refuse_next = ValueError("prompt of 3 tokens + max_tokens 9 exceeds 10")  # the engine's own check
    with pytest.raises(RemoteError) as info:
        client.submit(CompletionRequest([1, 2, 3], SamplingParams(max_tokens=9))).result(30)
    assert info.value.code == "bad_request"
