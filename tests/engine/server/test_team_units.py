"""Pure parts of the team server: frames, message validation, token bucket, admission, auth, metrics."""

from __future__ import annotations

import json

import msgpack
import pytest

from deepfim.engine.api import Priority
from deepfim.engine.server import frames
from deepfim.engine.server.admission import Admission
from deepfim.engine.server.auth import AuthError, UserStore, add_user, load_admin_token
from deepfim.engine.server.frames import ProtocolError
from deepfim.engine.server.limits import Limits, TokenBucket
from deepfim.engine.server.metrics import ServerMetrics


def test_frame_round_trip_and_version():
    frame = frames.encode({"type": "ping", "nonce": 7})
    length = int.from_bytes(frame[:4], "big")
    assert length == len(frame) - 4
    assert frames.decode(frame[4:]) == {"v": frames.VERSION, "type": "ping", "nonce": 7}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xc1", "bad_msgpack"),  # never-used byte
        (b"\x92\x01", "bad_msgpack"),  # truncated array
        (b"\xdd\xff\xff\xff\xff", "bad_msgpack"),  # array claiming 4G elements in 5 bytes
        (b"\x91" * 5000 + b"\x01", "bad_msgpack"),  # nesting deeper than the unpacker's stack
        (msgpack.packb([1, 2]), "bad_message"),
        (msgpack.packb({"v": 1, "type": 3}), "bad_message"),
        (msgpack.packb({"v": 99, "type": "ping"}), "unsupported_version"),
        (msgpack.packb({"v": 1, "type": "ping", "x": msgpack.ExtType(5, b"zz")}), "bad_message"),
        (msgpack.packb({1: 2}), "bad_msgpack"),  # non-string map keys
    ],
)
def test_decode_rejects_malformed_bodies(body, code):
    with pytest.raises(ProtocolError) as info:
        frames.decode(body)
    assert info.value.code == code and not info.value.fatal


def _complete(**fields):
    return {"v": 1, "type": "complete", "id": "r1", "prompt": [1, 2, 3], **fields}


def test_parse_complete_accepts_binary_and_list_prompts():
    spec = frames.parse_complete(_complete(prompt=frames.pack_prompt([5, 0, 300])), vocab_size=301)
    assert spec.prompt == [5, 0, 300]
    spec = frames.parse_complete(
        _complete(priority="expert", sampling={"max_tokens": 9, "stop": "\n", "temperature": 1}), 10
    )
    assert (spec.priority, spec.sampling.max_tokens, spec.sampling.stop) == (Priority.EXPERT, 9, ("\n",))
    assert spec.sampling.temperature == 1.0 and spec.mode == "instant" and spec.stream


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"prompt": "text"}, "'prompt' must be bin or array"),
        ({"prompt": []}, "empty"),
        ({"prompt": [1, "2"]}, "only integers"),
        ({"prompt": [1, True]}, "only integers"),
        ({"prompt": [1, 10]}, "token id 10"),
        ({"prompt": [-1]}, "token id -1"),
        ({"prompt": b"\x01\x00\x00"}, "multiple of 4"),
        ({"id": 5}, "'id' must be str"),
        ({"id": "x" * 500}, "1..128"),
        ({"sampling": {"temperature": "hot"}}, "'temperature' must be"),
        ({"sampling": {"max_tokens": True}}, "'max_tokens' must be int"),
        ({"sampling": {"top_p": 0}}, "top_p"),
        ({"sampling": {"stop": [""]}}, "stop strings"),
        ({"priority": "urgent"}, "unknown priority"),
        ({"stream": "yes"}, "'stream' must be bool"),
        ({"sampling": []}, "'sampling' must be dict"),
    ],
)
def test_parse_complete_names_the_bad_field(fields, fragment):
    with pytest.raises(ProtocolError) as info:
        frames.parse_complete(_complete(**fields), vocab_size=10)
    assert info.value.code == "bad_request"
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
        Limits().for_user({"max_frame_bytes": 1})
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
    assert token not in text and token.split("_")[-1] not in text
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
    m = ServerMetrics(lambda: {"deepfim_inflight_requests": {(): 2.0}})
    m.requests.inc("msgpack", "instant", "ok")
    m.user_requests.inc('we"ird\nname', "ok")
    m.latency.observe(0.03, "instant")
    m.latency.observe(50.0, "instant")
    public, admin = m.render(per_user=False), m.render(per_user=True)
    assert 'deepfim_requests_total{transport="msgpack",mode="instant",outcome="ok"} 1' in public
    assert 'deepfim_request_duration_seconds_bucket{mode="instant",le="0.05"} 1' in public
    assert 'deepfim_request_duration_seconds_bucket{mode="instant",le="+Inf"} 2' in public
    assert 'deepfim_request_duration_seconds_count{mode="instant"} 2' in public
    assert "deepfim_inflight_requests 2" in public
    assert "deepfim_user_requests_total" not in public
    assert 'deepfim_user_requests_total{user="we\\"ird\\nname",outcome="ok"} 1' in admin
