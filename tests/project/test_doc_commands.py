"""Every shell command in README.md and docs/*.md runs as written and answers as documented.

Each document's commands run in order in one shell from the checkout root (doc_commands.py:
a private home, the team server's ports moved to free ones). Every command must match one
entry of EXPECTED (what its output must look like), be a server that SERVICES starts and
checks, be covered by its own tests (COVERED_ELSEWHERE), or carry a not-run marker with a
reason in the document itself. A new documented command with none of these fails the test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from doc_commands import REPO, Command, DocSession, LspExchange, Result, Service, commands_of

DOCS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]

# Training needs the corpus (built from package registries) and hours; its tests run it small.
COVERED_ELSEWHERE = {
    r"^deepfim train\b": "tests/engine/training/",
    r"^deepfim bench\b": "tests/bench/ (runs --quick: about 3 minutes)",
}

REPORT_LINE = re.compile(r"^-- \S+:\d+:\d+ · (instant|expert) · (single|multi)-line · [\d.]+ ms \(context ", re.M)


def completion_report(r: Result) -> None:
    found = REPORT_LINE.search(r.out)
    assert found, "no `-- FILE:LINE:COL · mode · extent · ms` report line"
    assert r.out[: found.start()].strip(), "no completion above the report line"


def completion_json(r: Result) -> None:
    report = json.loads(r.out)
    assert {"completion", "mode", "timings", "location"} <= set(report)


def context_table(r: Result) -> None:
    assert re.search(r"^deepfim context \S+: [\d,]+ (of [\d,]+ )?tokens, (PSM|SPM)", r.out, re.M)
    assert re.search(r"#\s+start\s+end\s+tokens\s+kind", r.out)
    assert "shop/cart.py" in r.out


def index_statistics(r: Result) -> None:
    assert r.out.startswith("deepfim index ") and re.search(r"^python\s+\d+\s+\d+", r.out, re.M)
    assert "import edges:" in r.out and re.search(r"^tokens: [\d,]+", r.out, re.M)


def generation(r: Result) -> None:
    assert r.out.strip(), "nothing generated"  # tests/engine/test_cli.py checks the escapes
    assert re.search(r"\[\d+ tokens, \w+, \d+ ms\]", r.err)


def logits(r: Result) -> None:
    assert re.fullmatch(r"\s*\d+\s+\d+\s+\S+ -> (\S+:-?[\d.]+\s*){5}", r.out.strip())


def checksums_match(r: Result) -> None:
    assert re.fullmatch(r"\S+: \d+ files match SHA256SUMS", r.out.strip()), r.out


def memory_plan(r: Result) -> None:
    assert r.out.startswith("memory plan for ") and re.search(r"^  total: +[\d.]+ GiB", r.out, re.M), r.out
    assert "fp4" in r.out and "compressed entries" in r.out


def evaluation_table(r: Result) -> None:
    assert "| suite | hole | config | n | EM | edit sim |" in r.out, r.out[-2000:]
    assert re.search(r"^\| heldout \| all \| model/repository \| \d+ \|", r.out, re.M), r.out[-2000:]


def user_list(r: Result) -> None:
    assert re.search(r"^alice\s+key [0-9a-f]{12}\s+created \d{4}-\d\d-\d\dT", r.out, re.M), r.out


def user_revoked(r: Result) -> None:
    assert re.search(r"user 'alice' revoked", r.out + r.err), r.out + r.err


def user_token(r: Result) -> None:
    assert re.fullmatch(r"dfm_[0-9a-f]+_[\w-]+", r.out.strip()) and "shown only once" in r.err


def token_in_a_variable(r: Result) -> None:
    assert r.out == "" and "shown only once" in r.err


def certificate(r: Result) -> None:
    found = dict(line.split(": ", 1) for line in r.out.strip().splitlines())
    assert Path(found["certificate"]).expanduser().is_file() and Path(found["private key"]).is_file()


def health(r: Result) -> None:
    assert json.loads(r.out)["status"] == "ok"


def openai_completion(r: Result) -> None:
    body = json.loads(r.out)
    assert body["object"] == "text_completion" and isinstance(body["choices"][0]["text"], str)


EXPECTED: list[tuple[str, Callable[[Result], None]]] = [
    (r"^\./scripts/demo\.sh", completion_report),
    (r"^deepfim complete .*--json", completion_json),
    (r"^deepfim complete ", completion_report),
    (r"^deepfim context .*--segments-only", context_table),
    (r"^deepfim index ", index_statistics),
    (r"^deepfim generate ", generation),
    (r"^deepfim logits .*--last", logits),
    (r"^deepfim plan ", memory_plan),
    (r"^deepfim checksum .*--verify", checksums_match),
    (r"^deepfim eval ", evaluation_table),
    (r"^\w+=\$\(deepfim users add ", token_in_a_variable),
    (r"^deepfim users add ", user_token),
    (r"^deepfim users list", user_list),
    (r"^deepfim users revoke ", user_revoked),
    (r"^deepfim make-cert ", certificate),
    (r"^curl .*/health\b", health),
    (r"^curl .*/v1/completions\b", openai_completion),
]


def team_server(service: Service) -> None:
    ready = service.wait_for_stderr(r"^deepfim team server: https ")
    assert "TLS on" in ready, ready


def language_server(service: Service) -> None:
    lsp = LspExchange(service)
    root = (REPO / "examples" / "shop").as_uri()
    reply = lsp.request(1, "initialize", {"processId": None, "rootUri": root, "capabilities": {}})
    assert reply["result"]["capabilities"]["inlineCompletionProvider"] is not None, reply
    lsp.send({"method": "initialized", "params": {}})
    assert lsp.request(2, "shutdown", None).get("error") is None
    lsp.send({"method": "exit", "params": None})
    assert service.proc.wait(60) == 0


# (pattern, check once started, stop at the end of the document: a team server serves the
# commands after it; the language server ends with its own `exit`)
SERVICES: list[tuple[str, Callable[[Service], None], bool]] = [
    (r"^deepfim serve\b", team_server, True),
    (r"^deepfim lsp\b", language_server, False),
]


def _first(patterns, command: Command):
    return next((entry for entry in patterns if re.search(entry[0], command.program, re.S)), None)


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_run_as_written(doc, tmp_path):
    commands, not_run = commands_of(REPO / doc)
    for prefix, reason in not_run.items():
        assert reason.strip(), f"{doc}: the not-run marker for {prefix!r} gives no reason"
        assert any(c.text.startswith(prefix) for c in commands), f"{doc}: no command {prefix!r} to skip"
    session = DocSession(tmp_path / "home", tmp_path / "out")
    running: list[Service] = []
    failures: list[str] = []
    try:
        for command in commands:
            if any(command.text.startswith(prefix) for prefix in not_run):
                continue
            if any(re.search(pattern, command.program) for pattern in COVERED_ELSEWHERE):
                continue
            service = _first(SERVICES, command)
            if service is not None:
                _, check, stays_up = service
                started = Service(session, command, stdin_pipe=not stays_up)
                if stays_up:
                    running.append(started)
                check(started)
                continue
            expected = _first(EXPECTED, command)
            assert expected is not None, f"{command}\nno expectation for this command: add one to EXPECTED"
            result = session.run(command)
            try:
                assert result.rc == 0, f"exit status {result.rc}"
                expected[1](result)
            except AssertionError as exc:
                failures.append(f"{exc}\n{result.describe()}")
        for service in running:
            assert service.stop() == 0, f"{service.command}: Ctrl-C did not end it cleanly"
    finally:
        for service in running:
            if service.proc.poll() is None:
                service.proc.kill()
        session.close()
    assert not failures, "\n\n".join(failures)


def test_not_run_markers_stay_few():
    markers = {doc: commands_of(REPO / doc)[1] for doc in DOCS}
    assert sum(len(m) for m in markers.values()) <= 2, markers
