"""Drives a real language-server process over stdio with raw bytes (lsp_fuzz_messages.py) and
checks what comes back: a strict reader of the server's output, answers to the server's own
requests (as an editor gives them), resident memory sampled from /proc while it runs.

`run_fuzz(command, root, n, seed)` returns a `FuzzReport`; it raises nothing for what the
server does wrong — the report lists it, for tests to assert on and bench/ to print.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lsp_fuzz_messages import FuzzTraffic, frame

INTERNAL_ERROR = -32603


@dataclass
class FuzzReport:
    messages: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    crashed: bool = False  # the process died before `exit`
    exit_code: int | None = None
    unanswered: list = field(default_factory=list)  # ids owed an answer that never came
    answered_twice: list = field(default_factory=list)
    wrong_code: list = field(default_factory=list)  # (id, expected code, got)
    internal_errors: list = field(default_factory=list)  # (id, message) of -32603 answers
    suggestions: int = 0  # completion answers that carried items (the engine path really ran)
    null_id_errors: dict[int, int] = field(default_factory=dict)  # code -> count
    status_messages: list[str] = field(default_factory=list)  # window/showMessage texts
    framing_errors: list[str] = field(default_factory=list)  # the server's output was not clean LSP
    rss_mb: list[tuple[int, float]] = field(default_factory=list)  # (messages sent, resident MB)
    final_status: dict | None = None
    seconds: float = 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RawClient:
    """A client that writes whatever bytes it is given and reads the server's output strictly."""

    def __init__(self, command: list[str], env: dict, log_path: Path) -> None:
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env)
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self.responses: dict[object, list[dict]] = {}
        self.null_errors: list[dict] = []
        self.notifications: list[dict] = []
        self.framing_errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, data: bytes) -> None:
        with self._write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def request(self, msg_id, method: str, params) -> None:
        self.send(frame(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}).encode()))

    def wait_for(self, ids, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(i in self.responses for i in ids):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            header = out.readline()
            if not header:
                return
            if not header.startswith(b"Content-Length: ") or not header.endswith(b"\r\n"):
                self.framing_errors.append(f"bad header line {header[:80]!r}")
                continue
            length = int(header[16:-2])
            rest = out.readline()
            if rest.startswith(b"Content-Type:"):
                rest = out.readline()
            if rest != b"\r\n":
                self.framing_errors.append(f"no blank line after the header: {rest[:80]!r}")
            body = out.read(length)
            try:
                self._dispatch(json.loads(body))
            except ValueError as exc:
                self.framing_errors.append(f"unparsable body ({exc}): {body[:80]!r}")

    def _dispatch(self, msg: dict) -> None:
        if "method" in msg and "id" in msg:  # the server asks (progress tokens, ...): answer as editors do
            self.send(frame(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": None}).encode()))
            return
        with self._cond:
            if "method" in msg:
                self.notifications.append(msg)
            elif msg.get("id") is None:
                self.null_errors.append(msg)
            else:
                self.responses.setdefault(msg["id"], []).append(msg)
            self._cond.notify_all()

    def close(self, timeout: float = 30.0) -> int | None:
        """Waits for the process to leave by itself (after `exit` it must, with stdin still
        open, as editors keep it), then closes stdin; kills it if it does not."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                self.proc.stdin.close()
                return self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                return None
        finally:
            self._log.close()


def _initialize(client: RawClient, root: Path, timeout: float) -> None:
    params = {"processId": os.getpid(), "rootUri": root.as_uri(),
              "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
              "capabilities": {"window": {"workDoneProgress": True}}, "initializationOptions": {}}  # fmt: skip
    client.request("init", "initialize", params)
    if not client.wait_for(["init"], timeout):
        raise RuntimeError("the server did not answer initialize")
    client.send(frame(b'{"jsonrpc": "2.0", "method": "initialized", "params": {}}'))
    deadline = time.monotonic() + timeout
    for attempt in range(10**6):  # until the backend has loaded
        client.request(f"ready-{attempt}", "deepfim/status", {})
        if not client.wait_for([f"ready-{attempt}"], timeout):
            raise RuntimeError("the server did not answer deepfim/status")
        if not client.responses[f"ready-{attempt}"][0]["result"]["loading"] or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def run_fuzz(
    command: list[str],
    root: Path,
    n: int,
    seed: int,
    env: dict,
    log_path: Path,
    answer_timeout: float = 120.0,
    rss_every: int = 250,
    huge_bytes: int = 2_500_000,
) -> FuzzReport:
    """Send `n` fuzz messages to a fresh server, then check every owed answer arrived."""
    report = FuzzReport()
    client = RawClient(command, env, log_path)
    started = time.monotonic()
    try:
        _initialize(client, root, answer_timeout)
        owed: dict = {}
        optional: set = set()
        for item in FuzzTraffic(seed, root, huge_bytes).items(n):
            if client.proc.poll() is not None:
                break
            client.send(item.data)
            report.messages += 1
            report.by_category[item.category] = report.by_category.get(item.category, 0) + 1
            owed.update(item.must_answer)
            if item.wait:
                client.wait_for(list(item.must_answer), answer_timeout)
            optional |= item.may_answer
            if report.messages % rss_every == 0:
                report.rss_mb.append((report.messages, rss_mb(client.proc.pid)))
        client.request("final", "deepfim/status", {})
        owed["final"] = None
        client.wait_for(list(owed), answer_timeout)
        report.rss_mb.append((report.messages, rss_mb(client.proc.pid)))
        client.request("settled", "deepfim/status", {})  # once every owed answer is in
        client.wait_for(["settled"], answer_timeout)
        final = client.responses.get("settled")
        report.final_status = final[0].get("result") if final else None
        client.request("bye", "shutdown", None)
        client.wait_for(["bye"], answer_timeout)
        report.crashed = client.proc.poll() is not None
        client.send(frame(b'{"jsonrpc": "2.0", "method": "exit"}'))
    except (BrokenPipeError, ConnectionResetError):
        report.crashed = True
        owed = locals().get("owed", {})
    finally:
        report.exit_code = client.close()
        report.seconds = time.monotonic() - started
        report.crashed |= "Fatal Python error" in log_path.read_text(errors="replace")
    _check(report, client, owed)
    return report


def _check(report: FuzzReport, client: RawClient, owed: dict) -> None:
    for msg_id, expected in owed.items():
        got = client.responses.get(msg_id)
        if not got:
            report.unanswered.append(msg_id)
            continue
        if len(got) > 1:
            report.answered_twice.append(msg_id)
        code = got[0].get("error", {}).get("code")
        if code == INTERNAL_ERROR:
            report.internal_errors.append((msg_id, got[0]["error"].get("message", "")[:200]))
        elif expected is not None and code != expected:
            report.wrong_code.append((msg_id, expected, code))
    for answers in client.responses.values():
        for msg in answers:
            result = msg.get("result")
            report.suggestions += bool(isinstance(result, dict) and result.get("items"))
            if msg.get("error", {}).get("code") == INTERNAL_ERROR and msg["id"] not in owed:
                report.internal_errors.append((msg["id"], msg["error"].get("message", "")[:200]))
    for msg in client.null_errors:
        code = msg.get("error", {}).get("code")
        report.null_id_errors[code] = report.null_id_errors.get(code, 0) + 1
    report.status_messages = [m["params"]["message"] for m in client.notifications
                              if m.get("method") == "window/showMessage"]  # fmt: skip
    report.framing_errors = client.framing_errors
