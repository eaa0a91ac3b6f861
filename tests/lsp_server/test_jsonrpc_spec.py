"""JSON-RPC 2.0 and LSP framing as the specs say, message by message, against the real server
over stdio: parse errors, invalid requests, lifecycle errors, resync after broken framing,
and problems reported once rather than per message."""

import itertools
import json
import os
from pathlib import Path

import pytest
from lsp_fuzz_client import RawClient, _initialize
from lsp_fuzz_messages import frame
from lsp_support import server_args


def start(tmp: Path) -> RawClient:
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp / "cache")}
    client = RawClient(server_args(engine="double"), env, tmp / "server.log")
    client.log_path = tmp / "server.log"
    return client


@pytest.fixture(scope="module")
def shared(workspace, tmp_path_factory):
    """One initialized server for the tests that look only at their own answers."""
    client = start(tmp_path_factory.mktemp("shared"))
    _initialize(client, workspace, 60)
    yield client
    client.close(timeout=0.1)


@pytest.fixture
def ready(shared):
    shared.null_errors.clear()
    return shared


@pytest.fixture
def fresh(workspace, tmp_path):
    """A server of the test's own (lifecycle, and counting status messages)."""
    client = start(tmp_path)
    yield client
    client.close(timeout=0.1)


def answer(client: RawClient, msg_id):
    assert client.wait_for([msg_id], 30), f"no answer to {msg_id!r}"
    (got,) = client.responses[msg_id]
    return got


_probes = itertools.count()


def status(client: RawClient) -> dict:
    """deepfim/status; once it is answered, everything sent before it has been handled."""
    msg_id = f"probe-{next(_probes)}"
    client.request(msg_id, "deepfim/status", {})
    return answer(client, msg_id)["result"]


def send_json(client: RawClient, obj) -> None:
    client.send(frame(json.dumps(obj).encode()))


def test_a_body_that_is_not_json_gets_a_parse_error_with_id_null(ready):
    ready.send(frame(b'{"jsonrpc": "2.0", "id": 5, "method": '))
    status(ready)
    (error,) = ready.null_errors
    assert error["id"] is None and error["error"]["code"] == -32700


@pytest.mark.parametrize(
    "message, reply_id",
    [
        ({"id": 7, "method": "deepfim/status"}, 7),  # no "jsonrpc"
        ({"jsonrpc": "1.0", "id": 7, "method": "deepfim/status"}, 7),
        ({"jsonrpc": "2.0", "id": 7, "method": 42}, 7),
        ({"jsonrpc": "2.0", "id": "s7", "params": {}}, "s7"),  # no method, no result
        ({"jsonrpc": "2.0", "id": 7, "method": "deepfim/status", "params": 3}, 7),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "deepfim/status"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "deepfim/status"}, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "deepfim/status"}, None),
        ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None),  # the spec's own example
        ("just a string", None),
        ([], None),  # an empty batch
    ],
)
def test_invalid_requests_get_invalid_request_with_their_id_when_readable(ready, message, reply_id):
    ready.responses.pop(reply_id, None)
    send_json(ready, message)
    status(ready)
    if reply_id is None:
        (error,) = ready.null_errors
    else:
        error = answer(ready, reply_id)
        assert ready.null_errors == []
    assert error["error"]["code"] == -32600, error


def test_a_notification_with_bad_params_gets_no_answer(ready):
    before = set(ready.responses)
    send_json(ready, {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"bogus": 1}})
    send_json(ready, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": [1]}})
    status(ready)
    assert ready.null_errors == []
    assert [k for k in ready.responses if k not in before and not k.startswith("probe")] == []


def test_a_batch_is_answered_message_by_message(ready):
    send_json(ready, [{"jsonrpc": "2.0", "id": "b1", "method": "deepfim/status", "params": {}}, 1])
    assert "mode" in answer(ready, "b1")["result"]
    status(ready)
    assert [e["error"]["code"] for e in ready.null_errors] == [-32600]


def test_requests_before_initialize_and_after_shutdown_are_refused(fresh, workspace):
    raw = fresh
    raw.request("early", "deepfim/status", {})
    assert answer(raw, "early")["error"]["code"] == -32002
    _initialize(raw, workspace, 60)
    raw.request("again", "initialize", {"capabilities": {}})
    assert answer(raw, "again")["error"]["code"] == -32600
    raw.request("bye", "shutdown", None)
    assert answer(raw, "bye")["result"] is None
    raw.request("late", "deepfim/status", {})
    assert answer(raw, "late")["error"]["code"] == -32600


def test_broken_framing_loses_nothing_after_it(ready):
    body = json.dumps({"jsonrpc": "2.0", "id": "lost", "method": "deepfim/status", "params": {}}).encode()
    ready.send(b"Content-Length: 1000000000000\r\n\r\n" + body)  # refused without allocating
    ready.request("after-oversize", "deepfim/status", {})
    ready.send(b"Content-Length: abc\r\n\r\n{}")  # malformed header
    ready.request("after-bad-header", "deepfim/status", {})
    ready.send(b"Content-Length: %d\r\n\r\n" % (len(body) - 9) + body)  # too short: this one is lost
    ready.request("after-short", "deepfim/status", {})
    long_body = json.dumps({"jsonrpc": "2.0", "id": "long", "method": "deepfim/status", "params": {}}).encode()
    ready.send(b"Content-Length: %d\r\n\r\n" % (len(long_body) + 20) + long_body)  # too long
    ready.request("after-long", "deepfim/status", {})
    for msg_id in ("after-oversize", "after-bad-header", "after-short", "long", "after-long"):
        assert "mode" in answer(ready, msg_id)["result"]
    assert "lost" not in ready.responses


def test_a_flood_of_errors_is_logged_each_time_but_shown_once(fresh, workspace):
    ready = fresh
    _initialize(ready, workspace, 60)
    for _ in range(50):
        ready.send(frame(b"{not json"))
    final = status(ready)
    shown = [m for m in ready.notifications if m["method"] == "window/showMessage"]
    assert len(shown) == 1 and "not JSON" in shown[0]["params"]["message"]
    assert final["protocol"]["problems"]["parse"] == 50
    assert len(ready.null_errors) == 50  # every one still answered, as the spec wants
    log = ready.log_path.read_text()
    assert log.count("a message that is not JSON") == 50


def test_invalid_utf8_and_lone_surrogates_are_replaced_where_text_enters(ready, workspace):
    before = status(ready)["protocol"]["problems"]["text"]
    uri = (workspace / "odd.py").as_uri()
    text = "a = '\\ud800'\\nb = 1\\n"  # JSON escapes: a lone surrogate in the document
    ready.send(frame(b'{"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": '
                     b'{"uri": "%s", "languageId": "python", "version": 1, "text": "%s\xff"}}}'
                     % (uri.encode(), text.encode())))  # fmt: skip
    params = {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 5}, "context": {"triggerKind": 2}}
    ready.request("c1", "textDocument/inlineCompletion", params)
    assert "items" in answer(ready, "c1")["result"]  # answered, not -32603
    final = status(ready)
    assert final["protocol"]["problems"]["text"] == before + 2  # the \xff byte and the surrogate
    assert final["last_error"] is None


def test_a_ten_megabyte_buffer_gets_no_completion_and_one_message(fresh, workspace):
    ready = fresh
    _initialize(ready, workspace, 60)
    uri = (workspace / "huge.py").as_uri()
    item = {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n" * 1_700_000}
    send_json(ready, {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}})
    params = {"textDocument": {"uri": uri}, "position": {"line": 5, "character": 0}, "context": {"triggerKind": 1}}
    ready.request("c1", "textDocument/inlineCompletion", params)
    assert answer(ready, "c1")["result"]["items"] == []
    shown = [m["params"]["message"] for m in ready.notifications if m["method"] == "window/showMessage"]
    assert len(shown) == 1 and "huge.py" in shown[0] and "limit" in shown[0]
    assert "mode" in status(ready)  # and the server is responsive
