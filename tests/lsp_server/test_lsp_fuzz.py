"""A seeded fuzz run against the real server over stdio (lsp_fuzz_messages.py: framing,
envelopes, params, positions, huge and odd text, cancel storms), with the scripted test
double as the engine: no crash, no hang, every valid request answered exactly once with the
error the spec asks for, clean output, a handful of status messages and bounded memory.
bench/bench_lsp_fuzz.py runs the same traffic ten times longer and prints the figures."""

import os

from lsp_fuzz_client import run_fuzz
from lsp_support import server_args

from deepfim.lsp_server.problems import KINDS

MESSAGES = 2000
SEED = 16


def test_two_thousand_adversarial_messages(workspace, tmp_path):
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp_path / "cache")}
    log = tmp_path / "server.log"
    report = run_fuzz(server_args(step_ms=1.0, engine="double"), workspace, MESSAGES, SEED, env, log)

    assert report.messages == MESSAGES
    assert not report.crashed and report.exit_code == 0, log.read_text()[-3000:]
    assert report.unanswered == []  # no hang: every request owed an answer got one ...
    assert report.answered_twice == []  # ... exactly one
    assert report.wrong_code == []  # -32600 / -32601 / -32602 where the spec says
    assert report.internal_errors == []  # nothing the fuzz sent reached a crash in a handler
    assert report.framing_errors == []  # what the server wrote is clean LSP
    assert report.null_id_errors.get(-32700, 0) > 0 and report.null_id_errors.get(-32600, 0) > 0
    assert report.suggestions > 0  # completions really ran between the attacks
    # errors reach the editor as at most one status message per kind a minute, never one each
    assert 0 < len(report.status_messages) <= len(KINDS) * (1 + int(report.seconds // 60))
    assert report.final_status["protocol"]["in_flight"] == 0  # no per-request state left behind
    problems = report.final_status["protocol"]["problems"]
    assert problems["parse"] > 0 and problems["framing"] > 0 and problems["large-document"] > 0
    first_quarter = next(mb for sent, mb in report.rss_mb if sent >= MESSAGES // 4)
    assert max(mb for _, mb in report.rss_mb) - first_quarter < 150, report.rss_mb


LAZY_SERVER = """
import json, sys
def send(obj):
    body = json.dumps(obj).encode()
    sys.stdout.buffer.write(b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
    sys.stdout.buffer.flush()
while header := sys.stdin.buffer.readline():
    if not header.startswith(b"Content-Length: "):
        continue
    length = int(header.split()[1])
    sys.stdin.buffer.readline()
    try:
        msg = json.loads(sys.stdin.buffer.read(length))
        msg.get("id")
    except Exception:
        continue
    if msg.get("method") in ("initialize", "shutdown"):
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
    elif msg.get("method") == "deepfim/status" and str(msg["id"]).startswith(("ready", "settled")):
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {"loading": False}})
"""


def test_the_fuzz_oracle_catches_a_server_that_drops_requests(tmp_path):
    """The check can fail: a server that answers only what the harness itself needs is caught."""
    lazy = tmp_path / "lazy_server.py"
    lazy.write_text(LAZY_SERVER)
    report = run_fuzz(["python3", str(lazy)], tmp_path, 100, SEED, dict(os.environ), tmp_path / "log",
                      answer_timeout=0.5)  # fmt: skip
    assert not report.crashed
    assert len(report.unanswered) > 20 and "final" in report.unanswered
