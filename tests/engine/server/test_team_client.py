"""`RemoteBackend` as a `CompletionBackend`: session, tokenizer cache, streaming, errors, reconnects."""

from __future__ import annotations

import hashlib
import time

import pytest
from team_support import BOTH

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server.auth import UserStore
from deepfim.engine.server.client import RemoteBackendError, RemoteError, parse_address
from deepfim.engine.server.team_server import ServerThread
from deepfim.engine.server.tls import server_context


def test_handshake_gives_tokenizer_and_fim_orders(team):
    client = team.client("alice")
    served = team.tokenizer_file.read_bytes() if team.uses_double else None
    cached = open(client.tokenizer_path, "rb").read()
    assert served is None or cached == served
    assert client.tokenizer_path.endswith(f"tokenizer-{hashlib.sha256(cached).hexdigest()}.json")
    assert Tokenizer.from_file(client.tokenizer_path).vocab_size == client.welcome["vocab_size"]
    assert client.fim_orders("instant") == tuple(team.backend.fim_orders("instant"))
    with pytest.raises(ValueError, match="mode 'turbo' is not served"):
        client.fim_orders("turbo")
    assert client.welcome["user"] == "alice" and client.welcome["limits"]["max_prompt_tokens"] == 20_000


def test_tokenizer_is_fetched_once_and_refetched_when_corrupt(team):
    path = team.client("alice").tokenizer_path
    inode = _inode(path)
    assert team.client("bob").tokenizer_path == path and _inode(path) == inode  # served from the cache
    with open(path, "ab") as f:
        f.write(b" ")  # a damaged cache file fails its hash check and is replaced
    team.client("carol")
    assert _inode(path) != inode and hashlib.sha256(open(path, "rb").read()).hexdigest() in path


def _inode(path: str) -> int:
    import os

    return os.stat(path).st_ino


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_streamed_text_matches_result_for_every_candidate(team):
    client = team.client("alice")
    tok = Tokenizer.from_file(client.tokenizer_path)
    streamed = {0: "", 1: ""}

    means = []

    def on_text(index, text, mean_logprob):
        streamed[index] += text
        means.append(mean_logprob)

    req = CompletionRequest(tok.encode("for item in items:\n"), SamplingParams(max_tokens=6, n=2, temperature=0.8))
    result = client.submit(req, on_text).result(30)
    assert [c.text for c in result.candidates] == [streamed[0], streamed[1]]
    assert means and all(m is not None and m <= 0.0 for m in means)  # the server sends each piece's mean
    assert result.timings.prompt_tokens == len(req.prompt) and result.timings.generated_tokens > 0


def test_stop_strings_and_request_errors_reach_the_caller(team):
    client = team.client("alice")
    tok = Tokenizer.from_file(client.tokenizer_path)
    result = client.submit(CompletionRequest(tok.encode("x = 1\n"), SamplingParams(max_tokens=40, stop=(":",)))).result(
        30
    )
    if team.uses_double:
        assert result.candidates[0].finish_reason == "stop" and result.text.endswith(":")
    with pytest.raises(RemoteError) as info:
        client.submit(CompletionRequest(tok.encode("x"), SamplingParams(max_tokens=2000))).result(30)
    assert info.value.code == "bad_request" and "2000" in info.value.message
    with pytest.raises(RemoteError) as info:
        client.submit(CompletionRequest(tok.encode("x"), mode="turbo")).result(30)
    assert info.value.code == "unknown_mode"


def test_stats_come_from_the_server_without_waiting_for_it(team):
    client = team.client("bob")
    stats = client.stats()  # answered at once from what is known; the server's figures follow
    assert stats["server"] == team.address and stats["user"] == "bob" and stats["connected"]
    deadline = time.monotonic() + 10
    while "requests" not in stats:
        assert time.monotonic() < deadline
        time.sleep(0.02)
        stats = client.stats()
    assert stats["user"] == "bob" and stats["requests"]["ok"] == 0 and "backend" not in stats


def test_lost_server_fails_pending_requests_then_reconnects(team, tls_files):
    client = team.client("alice")
    tok = Tokenizer.from_file(client.tokenizer_path)
    team.backend.token_delay_s = 0.05  # 250 tokens: longer than the server's shutdown grace
    handle = client.submit(CompletionRequest(tok.encode("long"), SamplingParams(max_tokens=250)))
    time.sleep(0.1)
    port = team.port
    team.thread.stop()  # the server goes away mid-request
    with pytest.raises(RemoteBackendError, match=f"team server {team.address}"):
        handle.result(10)
    with pytest.raises(RemoteBackendError):  # still down: fails fast and clearly
        client.submit(CompletionRequest(tok.encode("x"), SamplingParams(max_tokens=2))).result(10)
    restarted = ServerThread(
        team.backend,
        UserStore(team.users_file),
        port=port,
        ssl_context=server_context(*tls_files),
    ).start()
    try:
        deadline = time.monotonic() + 15
        while True:  # the client retries with back-off; the first try after it ends succeeds
            try:
                result = client.submit(CompletionRequest(tok.encode("back"), SamplingParams(max_tokens=3))).result(10)
                break
            except RemoteBackendError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert result.timings.generated_tokens == 3
    finally:
        restarted.stop()


def test_unreachable_server_and_bad_addresses(tmp_path, tls_files):
    with pytest.raises(ValueError, match="host:port"):
        parse_address("no-port")
    assert parse_address("[::1]:7431") == ("::1", 7431)
    from deepfim.engine.server.client import RemoteBackend

    with pytest.raises(RemoteBackendError, match="cannot connect"):  # how soon: bench/bench_timeouts.py
        RemoteBackend("127.0.0.1:1", "t", str(tls_files[0]), cache_dir=tmp_path, timeout_s=2)


def test_client_needs_a_token():
    from deepfim.engine.server.client import RemoteBackend

    with pytest.raises(ValueError, match="a user token is required"):
        RemoteBackend("127.0.0.1:7431", None)
