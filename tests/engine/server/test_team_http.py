"""The HTTP API: OpenAI-compatible /v1/completions (plain and SSE), /v1/models, /metrics."""

from __future__ import annotations

import json
import time

import pytest
from team_support import BOTH

from deepfim.engine.model.prompt_format import build_fim_prompt
from deepfim.engine.model.tokenizer import Tokenizer

BODY = {"prompt": "def add(a, b):\n    return ", "suffix": "\n\nprint(add(1, 2))\n", "max_tokens": 20}


def _sse(raw: bytes) -> list:
    events = [line[len(b"data: ") :] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    return [e.decode() if e == b"[DONE]" else json.loads(e) for e in events]


def test_completion_response_has_the_openai_shape(team):
    status, headers, data = team.http("POST", "/v1/completions", team.tokens["alice"], BODY)
    assert status == 200 and headers["Content-Type"] == "application/json"
    body = json.loads(data)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "instant"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["text"] and choice["finish_reason"] in ("length", "stop")
    usage = body["usage"]
    assert (
        usage["completion_tokens"] <= 20
        and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )
    tok = Tokenizer.from_file(team.backend.tokenizer_path)
    sent = team.backend.submitted[-1].prompt if team.uses_double else None
    # The server builds the same FIM prompt the engine's own helper builds from prefix + suffix.
    assert sent is None or sent == build_fim_prompt(tok, BODY["prompt"], BODY["suffix"]).ids
    assert usage["prompt_tokens"] == len(build_fim_prompt(tok, BODY["prompt"], BODY["suffix"]).ids)


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_streaming_sse_matches_the_plain_answer(team):
    body = {**BODY, "max_tokens": 20 if team.uses_double else 6}
    _, _, plain = team.http("POST", "/v1/completions", team.tokens["alice"], body)
    status, headers, raw = team.http("POST", "/v1/completions", team.tokens["bob"], {**body, "stream": True})
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = _sse(raw)
    assert events[-1] == "[DONE]"
    chunks, final = events[:-2], events[-2]
    assert all(e["choices"][0]["finish_reason"] is None for e in chunks)
    assert len(chunks) > (1 if team.uses_double else 0)  # random weights may emit bytes that join into one char
    assert final["choices"][0]["finish_reason"] in ("length", "stop") and final["usage"]["completion_tokens"] > 0
    assert "".join(e["choices"][0]["text"] for e in chunks) == json.loads(plain)["choices"][0]["text"]


def test_several_candidates_and_expert_model(team):
    status, _, data = team.http(
        "POST", "/v1/completions", team.tokens["carol"], {**BODY, "n": 2, "model": "expert", "stop": ["\n"]}
    )
    body = json.loads(data)
    assert status == 200 and body["model"] == "expert" and [c["index"] for c in body["choices"]] == [0, 1]
    if team.uses_double:
        assert team.backend.submitted[-1].mode == "expert" and team.backend.submitted[-1].sampling.stop == ("\n",)


def test_models_lists_the_served_modes(team):
    status, _, data = team.http("GET", "/v1/models", team.tokens["alice"])
    assert status == 200 and [m["id"] for m in json.loads(data)["data"]] == ["instant", "expert"]


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_sse_client_leaving_mid_stream_cancels_the_request(team):
    if team.uses_double:
        team.backend.token_delay_s = 0.02  # 1,000 tokens: 20 s, far longer than the client stays
    # on the real engine too, 1,000 tokens outlast noticing the disconnect on a busy machine
    conn = team.raw()
    conn.request("POST", "/v1/completions", team.tokens["bob"], json.dumps({**BODY, "max_tokens": 1000,
                                                                            "stream": True}).encode())  # fmt: skip
    assert conn.read_until(b"data: ").startswith(b"HTTP/1.1 200 OK")
    conn.close()
    deadline = time.monotonic() + 10
    while team.cancelled("bob") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert team.server_state()["running"] == 0


def test_a_non_streaming_client_leaving_cancels_its_request_too(team):
    team.backend.token_delay_s = 0.02
    conn = team.raw()
    conn.request("POST", "/v1/completions", team.tokens["carol"], json.dumps({**BODY, "max_tokens": 250}).encode())
    deadline = time.monotonic() + 10
    while team.server_state()["running"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    conn.close()
    while team.cancelled("carol") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_waiting_stream_sends_heartbeats(make_team):
    import dataclasses

    from team_support import TEST_LIMITS

    team = make_team(dataclasses.replace(TEST_LIMITS, max_backend_inflight=1, heartbeat_s=0.05))
    team.backend.token_delay_s = 0.02
    first = team.raw()
    first.request("POST", "/v1/completions", team.tokens["alice"], json.dumps({**BODY, "max_tokens": 250,
                                                                                "stream": True}).encode())  # fmt: skip
    first.read_until(b"data: ")
    waiting = team.raw()  # queued behind alice: no text for a while, but never silent
    waiting.request("POST", "/v1/completions", team.tokens["bob"], json.dumps({**BODY, "stream": True}).encode())
    assert b": keep-alive" in waiting.read_until(b": keep-alive")
    first.close()
    waiting.close()


def test_metrics_count_requests_tokens_and_latency(team):
    for user in ("alice", "bob"):
        assert team.http("POST", "/v1/completions", team.tokens[user], BODY)[0] == 200
    status, headers, data = team.http("GET", "/metrics", team.tokens["alice"])
    text = data.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'deepfim_requests_total{mode="instant",outcome="ok"} 2.0' in text
    assert 'deepfim_request_duration_seconds_count{mode="instant"} 2.0' in text
    assert "# TYPE deepfim_request_duration_seconds histogram" in text
    generated = next(line for line in text.splitlines() if line.startswith("deepfim_generated_tokens_total "))
    assert 0 < float(generated.split()[1]) <= 40
    assert "deepfim_open_connections 1.0" in text  # this very request
