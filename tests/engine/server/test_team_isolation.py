"""One user's code never reaches another user's completion (per-user namespaces).

The backend keeps per-namespace state like a prefix cache; the server must put every
request in the authenticated user's namespace whatever the client claims. Evidence used:
the canary string (never in another user's text) and `cached_tokens` (no reuse of state
computed from another user's prompt). The positive controls show the probes would see a
leak if there were one.
"""

from __future__ import annotations

import json

import pytest
from team_support import BOTH

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.prompt_format import build_fim_prompt
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server.client import RemoteError

CANARY = "CANARY-7f3a9c1e55d0"
SECRET_FILE = f"import os\n\nAPI_KEY = '{CANARY}'\nTIMEOUT = 30\n\ndef connect():\n    return API_KEY\n"
PROBE_PREFIX = "import os\n\nAPI_KEY = '"
SUFFIX = "'\nTIMEOUT = 30\n"
# Both users work on the same repository: every prompt starts with this shared file, long
# enough (several 128-token snapshot blocks) that a cache leaking across namespaces would
# report it as cached for the second user.
SHARED = [
    (
        "shop/models.py",
        "".join(
            f"class Item{i}:\n    def __init__(self, price_{i}: float) -> None:\n        self.price = price_{i}\n\n"
            for i in range(3)
        ),
    )
]


def _complete(client, prefix: str, suffix: str = SUFFIX, namespace: str = "local", max_tokens: int = 40):
    tok = Tokenizer.from_file(client.tokenizer_path)
    ids = build_fim_prompt(tok, prefix, suffix, path="shop/settings.py", context_files=SHARED).ids
    req = CompletionRequest(ids, SamplingParams(max_tokens=max_tokens), namespace=namespace)
    return client.submit(req).result(120)


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_canary_in_one_users_context_never_reaches_another(team):
    alice, bob = team.client("alice"), team.client("bob")
    n = 40 if team.uses_double else 8  # the double needs room to recall the canary; the engine is slower
    _complete(alice, SECRET_FILE, "", max_tokens=n)  # alice's file, with the secret, is now in her cached state
    bob_result = _complete(bob, PROBE_PREFIX, max_tokens=n)  # shares the long repository prefix with alice's
    assert CANARY not in bob_result.text
    assert bob_result.timings.cached_tokens == 0  # nothing computed from alice's prompt was reused
    alice_probe = _complete(alice, PROBE_PREFIX, max_tokens=n)
    assert alice_probe.timings.cached_tokens > 0  # control: the same probe does hit alice's own cache
    if team.uses_double:  # control: and in her own namespace the probe recalls her secret
        assert CANARY in alice_probe.text


def test_client_supplied_namespaces_are_not_trusted(team):
    alice, bob = team.client("alice"), team.client("bob")
    _complete(alice, SECRET_FILE, "")
    for claimed in ("team:alice", "team:nonexistent"):
        with pytest.raises(RemoteError) as info:
            _complete(bob, PROBE_PREFIX, namespace=claimed)
        assert info.value.code == "forbidden"
    # RemoteBackend never sends a private namespace: bob's "user:alice" runs as bob.
    assert CANARY not in _complete(bob, PROBE_PREFIX, namespace="user:alice").text
    # a hand-made request claiming alice's namespace is refused the same way
    status, _, data = team.http("POST", "/v1/completions", team.tokens["bob"],
                                {"prompt": [1, 2, 3], "namespace": "user:alice"})  # fmt: skip
    assert status == 403 and json.loads(data)["error"]["code"] == "forbidden"
    if team.uses_double:
        assert [r.namespace for r in team.backend.submitted] == ["user:alice", "user:bob"]


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_every_request_runs_in_its_users_namespace(team):
    """Three users send the same prompt twice: each user's first request finds nothing cached
    (no namespace shared with another user), each second one finds its own first."""
    for name in ("alice", "bob", "carol"):
        first = _complete(team.client(name), PROBE_PREFIX, max_tokens=4)
        assert first.timings.cached_tokens == 0, name
    for name in ("alice", "bob", "carol"):
        again = _complete(team.client(name), PROBE_PREFIX, max_tokens=4)
        assert again.timings.cached_tokens > 0, name
    if team.uses_double:
        assert [r.namespace for r in team.backend.submitted] == [f"user:{n}" for n in ("alice", "bob", "carol")] * 2


@pytest.mark.parametrize("team", BOTH, indirect=True)
def test_configured_team_namespace_is_shared_on_purpose(team):
    alice, bob = team.client("alice"), team.client("bob")
    _complete(alice, SECRET_FILE, "", namespace="team:core", max_tokens=4)
    shared = _complete(bob, SECRET_FILE, "", namespace="team:core", max_tokens=4)
    assert shared.timings.cached_tokens > 0  # bob reuses what alice computed in the team namespace
    private = _complete(bob, SECRET_FILE, "", max_tokens=4)
    assert private.timings.cached_tokens == 0  # ...but his own namespace starts empty


def test_openai_endpoint_is_isolated_too(team):
    _complete(team.client("alice"), SECRET_FILE, "")
    for _ in range(2):
        status, _, data = team.http(
            "POST", "/v1/completions", team.tokens["bob"], {"prompt": PROBE_PREFIX, "suffix": SUFFIX, "max_tokens": 40}
        )
        assert status == 200 and CANARY not in json.loads(data)["choices"][0]["text"]
    status, _, data = team.http(
        "POST", "/v1/completions", team.tokens["alice"], {"prompt": PROBE_PREFIX, "suffix": SUFFIX, "max_tokens": 40}
    )
    assert status == 200
    if team.uses_double:
        assert CANARY in json.loads(data)["choices"][0]["text"]
