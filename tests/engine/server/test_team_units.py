"""Pure parts of the team server: request validation, token bucket, admission, auth, metrics."""

from __future__ import annotations

import json
import types

import pytest

from deepfim.engine.api import Priority
from deepfim.engine.server.admission import Admission
from deepfim.engine.server.auth import AuthError, UserStore, add_user, list_users, load_admin_token, revoke_user
from deepfim.engine.server.limits import Limits, TokenBucket
from deepfim.engine.server.metrics import ServerMetrics
from deepfim.engine.server.openai_compat import parse_body
from deepfim.engine.server.requests import RequestError

MODES = {"instant": ["psm"], "expert": ["spm"]}


def test_parse_body_accepts_text_and_token_id_prompts():
    parsed = parse_body({"prompt": [5, 0, 300]}, MODES, vocab_size=301)
    assert parsed.spec.prompt == [5, 0, 300] and not parsed.needs_tokenizing and not parsed.spec.stream
    parsed = parse_body({"prompt": ["def f("], "suffix": ")", "model": "expert", "stop": "\n", "temperature": 1,
                         "priority": "background", "max_tokens": 9}, MODES, 10)  # fmt: skip
    assert (parsed.prefix, parsed.suffix, parsed.spec.mode) == ("def f(", ")", "expert")
    assert (parsed.spec.priority, parsed.spec.sampling.max_tokens, parsed.spec.sampling.stop) == (
        Priority.BACKGROUND,
        9,
        ("\n",),
    )
    assert parsed.spec.sampling.temperature == 1.0 and parsed.text_bytes() == 7
    assert parse_body({"prompt": "x", "model": "expert"}, MODES, 10).spec.priority is Priority.EXPERT
    assert parse_body({"prompt": "x", "confidence_floor": -0.5}, MODES, 10).spec.sampling.confidence_floor == -0.5


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"prompt": 5}, "'prompt' must be a string"),
        ({}, "'prompt' is required"),
        ({"prompt": [1, "2"]}, "only integers"),
        ({"prompt": [1, True]}, "only integers"),
        ({"prompt": [1, 10]}, "token id 10"),
        ({"prompt": [-1]}, "token id -1"),
        ({"prompt": [1], "suffix": "x"}, "send no 'suffix'"),
        ({"prompt": "x", "temperature": "hot"}, "'temperature' must be"),
        ({"prompt": "x", "max_tokens": True}, "'max_tokens' must be int"),
        ({"prompt": "x", "top_p": 0}, "top_p"),
        ({"prompt": "x", "stop": [""]}, "stop strings"),
        ({"prompt": "x", "confidence_floor": 0.5}, "confidence_floor"),
        ({"prompt": "x", "confidence_floor": "high"}, "'confidence_floor' must be"),
        ({"prompt": "x", "priority": "urgent"}, "unknown priority"),
        ({"prompt": "x", "stream": "yes"}, "'stream' must be bool"),
        ({"prompt": "x", "model": "gpt-9"}, "model 'gpt-9' is not served"),
        ({"prompt": "x", "echo": True, "best_of": 2}, "not implemented by this server: best_of, echo"),
        ([], "must be a JSON object"),
    ],
)
def test_parse_body_names_the_bad_field(body, fragment):
    with pytest.raises(RequestError) as info:
        parse_body(body, MODES, vocab_size=10)
    assert info.value.status in (400, 404)
    assert fragment in info.value.message


def test_token_bucket_refills_at_rate():
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() == 0.0
    now[0] += 100.0
    assert sum(bucket.take() == 0.0 for _ in range(10)) == 3  # never more than the burst


def test_limits_validate_and_apply_user_overrides():
    with pytest.raises(ValueError, match="max_inflight"):
        Limits(max_inflight=0)
    with pytest.raises(ValueError, match="unknown per-user limits"):
        Limits().for_user({"max_body_bytes": 1})
    assert Limits().for_user({"max_inflight": 2}).max_inflight == 2


def test_admission_round_robin_across_users_and_priority_first():
    adm = Admission(capacity=1)
    order = []
    tickets = {}

    def add(user, tag, prio=Priority.INSTANT):
        tickets[tag] = adm.enqueue(user, prio, lambda: order.append(tag))

    for i in range(4):
        add("alice", f"a{i}")  # a0 starts at once (free slot), a1..a3 wait
    add("bob", "b0")
    add("carol", "c0", Priority.BACKGROUND)
    add("bob", "b1", Priority.EXPERT)
    for _ in range(6):
        adm.finished(tickets[order[-1]])
    # bob's instant request overtakes alice's backlog; instant before expert before background.
    assert order == ["a0", "b0", "a1", "a2", "a3", "b1", "c0"]
    assert adm.running == 1 and adm.queued == 0


def test_admission_withdraw_only_while_queued():
    adm = Admission(capacity=1)
    started = []
    first = adm.enqueue("u", Priority.INSTANT, lambda: started.append(1))
    second = adm.enqueue("u", Priority.INSTANT, lambda: started.append(2))
    assert not adm.withdraw(first) and adm.withdraw(second)
    adm.finished(first)
    assert started == [1] and adm.running == 0 and adm.queued == 0


def test_users_file_stores_only_salted_hashes(tmp_path):
    path = tmp_path / "users.json"
    token = add_user(path, "alice", limits={"max_inflight": 2})
    text = path.read_text()
    secret = token.split("_", 2)[2]  # dfm_<key id>_<secret>; the secret itself may contain "_"
    assert token not in text and secret not in text
    assert path.stat().st_mode & 0o077 == 0
    store = UserStore(path)
    principal = store.authenticate(token)
    assert principal.name == "alice" and principal.role == "user" and principal.limits == {"max_inflight": 2}
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.authenticate("dfm_000000000000_" + "a" * 43) is None
    assert store.authenticate(None) is None and store.authenticate(["x"]) is None
    with pytest.raises(AuthError, match="already exists"):
        add_user(path, "alice")
    with pytest.raises(AuthError, match="must match"):
        add_user(path, "../evil")


def test_replaced_token_stops_working_without_restart(tmp_path):
    path = tmp_path / "users.json"
    old = add_user(path, "bob")
    store = UserStore(path)
    assert store.authenticate(old).name == "bob"
    new = add_user(path, "bob", replace=True)
    assert store.authenticate(old) is None and store.authenticate(new).name == "bob"


def test_admin_token_is_separate_and_created_private(tmp_path):
    path = tmp_path / "admin-token"
    admin = load_admin_token(path)
    assert path.stat().st_mode & 0o077 == 0 and load_admin_token(path) == admin
    users = tmp_path / "users.json"
    user = add_user(users, "alice")
    store = UserStore(users, admin)
    assert store.authenticate(admin).is_admin and not store.authenticate(user).is_admin
    entry = json.loads(users.read_text())
    entry["users"][0]["limits"] = {"max_inflight": -1}
    users.write_text(json.dumps(entry))
    with pytest.raises(AuthError, match="not positive numbers"):
        UserStore(users)
    with pytest.raises(AuthError, match="not a DeepFIM users file"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"users": "nope"}))
        UserStore(bad)


def test_metrics_text_format_and_per_user_gate():
    service = types.SimpleNamespace(connections=3, admission=types.SimpleNamespace(running=2, queued=0))
    m = ServerMetrics(service)
    m.requests.labels("instant", "ok").inc()
    m.user_requests.labels('we"ird\nname', "ok").inc()
    m.latency.labels("instant").observe(0.03)
    m.latency.labels("instant").observe(50.0)
    public, admin = m.render(per_user=False).decode(), m.render(per_user=True).decode()
    assert 'deepfim_requests_total{mode="instant",outcome="ok"} 1.0' in public
    assert 'deepfim_request_duration_seconds_bucket{le="0.05",mode="instant"} 1.0' in public
    assert 'deepfim_request_duration_seconds_bucket{le="+Inf",mode="instant"} 2.0' in public
    assert 'deepfim_request_duration_seconds_count{mode="instant"} 2.0' in public
    assert "deepfim_inflight_requests 2.0" in public and "deepfim_open_connections 3.0" in public
    assert "process_cpu_seconds_total" in public and "python_gc_objects_collected_total" in public
    assert "deepfim_user_requests_total" not in public
    assert 'deepfim_user_requests_total{outcome="ok",user="we\\"ird\\nname"} 1.0' in admin


def test_users_are_listed_without_secrets_and_revoked(tmp_path):
    path = tmp_path / "users.json"
    token = add_user(path, "alice", limits={"max_inflight": 2})
    add_user(path, "bob")
    listed = list_users(path)
    assert [(u["name"], u["limits"]) for u in listed] == [("alice", {"max_inflight": 2}), ("bob", {})]
    assert token not in json.dumps(listed) and "hash" not in json.dumps(listed) and "salt" not in json.dumps(listed)
    store = UserStore(path)
    assert store.authenticate(token).name == "alice"
    revoke_user(path, "alice")
    assert store.authenticate(token) is None and store.user_names() == ["bob"]
    with pytest.raises(AuthError, match="no user 'alice'"):
        revoke_user(path, "alice")
