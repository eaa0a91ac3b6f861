"""The rate limit on status messages, and JSON-RPC envelope classification, as pure functions."""

import pytest

from deepfim.lsp_server import envelope
from deepfim.lsp_server.problems import ProblemReporter


def test_one_message_per_kind_per_interval_carrying_the_count_of_the_rest():
    now = [0.0]
    shown: list[str] = []
    reporter = ProblemReporter(shown.append, interval_s=60, clock=lambda: now[0])
    assert reporter.report("parse", "bad 1") is True
    for i in range(5):
        now[0] += 10
        assert reporter.report("parse", f"bad {i + 2}") is False
    assert reporter.report("framing", "other kind") is True  # kinds are limited separately
    now[0] = 61
    assert reporter.report("parse", "bad 7") is True
    assert shown == [
        "DeepFIM: bad 1 (see the log)",
        "DeepFIM: other kind (see the log)",
        "DeepFIM: bad 7 (and 5 more like it in the last minute; see the log)",
    ]
    assert reporter.counts["parse"] == 7
    with pytest.raises(ValueError, match="unknown problem kind 'client-chosen'"):
        reporter.report("client-chosen", "x")  # the state per kind stays bounded


@pytest.mark.parametrize(
    "message, kind, reply_id",
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "m", "params": {}}, envelope.REQUEST, 1),
        ({"jsonrpc": "2.0", "id": "a", "method": "m"}, envelope.REQUEST, "a"),
        ({"jsonrpc": "2.0", "method": "m", "params": [1]}, envelope.NOTIFICATION, None),
        ({"jsonrpc": "2.0", "method": "m", "params": None}, envelope.NOTIFICATION, None),
        ({"jsonrpc": "2.0", "id": 3, "result": None}, envelope.RESPONSE, 3),
        ({"jsonrpc": "2.0", "id": None, "error": {"code": -1, "message": "x"}}, envelope.RESPONSE, None),
        ({"jsonrpc": "2.0", "id": 3, "result": 1, "error": {}}, envelope.BAD_RESPONSE, None),
        ({"jsonrpc": "2.0", "id": 3, "error": {"code": "x", "message": "y"}}, envelope.BAD_RESPONSE, None),
        ({"jsonrpc": "2.0", "id": [3], "result": 1}, envelope.BAD_RESPONSE, None),
        ({"id": 1, "method": "m"}, envelope.INVALID, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, envelope.INVALID, 1),
        ({"jsonrpc": "2.0", "id": True, "method": "m"}, envelope.INVALID, None),
        ({"jsonrpc": "2.0", "id": 2.0, "method": "m"}, envelope.INVALID, None),
        ({"jsonrpc": "2.0", "id": None, "method": "m"}, envelope.INVALID, None),
        ({"jsonrpc": "2.0", "id": 1, "method": "m", "params": "x"}, envelope.INVALID, 1),
        ({"jsonrpc": "2.0", "id": 1}, envelope.INVALID, 1),
        (42, envelope.INVALID, None),
    ],
)
def test_envelopes_are_classified_as_json_rpc_2_says(message, kind, reply_id):
    env = envelope.classify(message)
    assert (env.kind, env.reply_id) == (kind, reply_id)
    assert (env.problem is None) == (kind not in (envelope.INVALID, envelope.BAD_RESPONSE))
