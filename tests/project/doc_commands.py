"""Runs the shell commands of the project's documentation the way a reader would.

`commands_of` extracts every command of the fenced ``bash``/``sh`` blocks of a Markdown file
(a line ending in ``\\`` continues on the next; comment-only lines are skipped) and the
file's not-run markers, written in the document itself::

    <!-- doc-test: not run "./scripts/test.sh" because it is the test suite, this test included -->

`DocSession` runs one document's commands in order in one persistent bash (so `cd` and
``TOKEN=$(...)`` carry over, as in a terminal), from the checkout root, with a private
``$HOME`` and ``.venv/bin`` first on ``PATH``; each command's exit status, stdout and stderr
are kept. Long-running servers (`deepfim serve`, `deepfim lsp`) are not run in the session:
`Service` starts them beside it, waits until they are ready and stops them at the end.

The documented default ports 7431/7432 of the team server become two free ports for the
session (this test may run beside another on the same machine): a `deepfim serve` without
``--port`` gets ``--port P``, and 7431/7432 in other commands become P/P+1.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELL_LANGUAGES = {"bash", "sh", "shell"}
NOT_RUN = re.compile(r'<!--\s*doc-test:\s*not run\s+"(?P<command>[^"]+)"\s+because\s+(?P<reason>[^>]*?)\s*-->')
DEFAULT_PORT = 7431


@dataclass(frozen=True)
class Command:
    doc: str  # path relative to the checkout
    line: int  # where it starts in the document
    text: str

    @property
    def program(self) -> str:
        """The command's words without its trailing comment and without the checkout's
        `.venv/bin/` (so `deepfim ...` either way); what expectations are matched against."""
        joined = self.text.replace("\\\n", " ")
        try:
            joined = " ".join(shlex.split(joined, comments=True))
        except ValueError:  # unbalanced quotes: match the text as written
            pass
        return re.sub(r"(^|[\s(])\.venv/bin/", r"\1", joined)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def commands_of(doc: Path) -> tuple[list[Command], dict[str, str]]:
    """The shell commands of `doc`, in order, and its not-run markers {command prefix: reason}."""
    text = doc.read_text(encoding="utf-8")
    rel = doc.relative_to(REPO).as_posix()
    commands, fence, pending, start = [], None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        if fence not in SHELL_LANGUAGES:
            continue
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        pending += line.lstrip() if not pending else "\n" + line
        if line.rstrip().endswith("\\"):
            continue
        commands.append(Command(rel, start, pending))
        pending = ""
    markers = {m["command"]: m["reason"] for m in NOT_RUN.finditer(text)}
    return commands, markers


@dataclass
class Result:
    command: Command
    run_as: str
    rc: int
    out: str
    err: str

    def describe(self) -> str:
        out, err = self.out[-2000:], self.err[-2000:]
        return f"{self.command}\n  ran: {self.run_as}\n  exit {self.rc}\n  stdout: {out}\n  stderr: {err}"


def free_port_pair() -> int:
    """P such that P and P+1 are free on this machine now."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two adjacent free ports")


class DocSession:
    """One document's commands in one bash, with a private home (see the module docstring)."""

    def __init__(self, home: Path, scratch: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        scratch.mkdir(parents=True, exist_ok=True)
        self.scratch = scratch
        self.port = free_port_pair()
        drop = {"DEEPFIM_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "VIRTUAL_ENV", "PYTHONPATH"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env.update(HOME=str(home), PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        self._bash = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._count = 0

    def _pump(self) -> None:
        for line in self._bash.stdout:
            self._lines.put(line)

    def local(self, command: Command) -> str:
        """The command with the session's ports (see the module docstring)."""
        text = command.text
        if "--port" not in text:  # right after the command name: a trailing comment may follow
            text = re.sub(r"\bdeepfim serve\b", f"deepfim serve --port {self.port}", text, count=1)
        text = re.sub(rf"\b{DEFAULT_PORT}\b", str(self.port), text)
        return re.sub(rf"\b{DEFAULT_PORT + 1}\b", str(self.port + 1), text)

    def run(self, command: Command, timeout: float = 300.0) -> Result:
        self._count += 1
        out, err = self.scratch / f"{self._count}.out", self.scratch / f"{self._count}.err"
        text = self.local(command)
        marker = f"__doc_command_{self._count}_done__"
        self._bash.stdin.write(f'{{ {text}\n}} >"{out}" 2>"{err}" </dev/null\necho "{marker} $?"\n')
        self._bash.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{command}: still running after {timeout:.0f} s") from None
            if line.startswith(marker):
                rc = int(line.split()[-1])
                break
        return Result(command, text, rc, out.read_text(errors="replace"), err.read_text(errors="replace"))

    def close(self) -> None:
        if self._bash.poll() is None:
            self._bash.stdin.close()
            self._bash.wait(30)


class Service:
    """A documented server command, run beside the session until `stop`."""

    def __init__(self, session: DocSession, command: Command, stdin_pipe: bool = False) -> None:
        self.command, self.run_as = command, session.local(command)
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", f"exec {self.run_as}"],
            cwd=REPO,
            env=session.env,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode(errors="replace"))

    def wait_for_stderr(self, pattern: str, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in list(self.stderr) if re.search(pattern, line)), None)
            if found is not None:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.command}: never printed {pattern!r}; stderr:\n{''.join(self.stderr)[-3000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C, as a user stops it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.command}: did not stop within {timeout:.0f} s of Ctrl-C") from None


class LspExchange:
    """JSON-RPC over a `deepfim lsp` process's stdio (Content-Length framing)."""

    def __init__(self, service: Service) -> None:
        self.proc = service.proc
        self._messages: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.proc.stdout
        while True:
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            if not headers:
                return
            self._messages.put(json.loads(stream.read(int(headers["content-length"]))))

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.proc.stdin.flush()

    def request(self, request_id: int, method: str, params: dict | None, timeout: float = 120.0) -> dict:
        self.send({"id": request_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self._messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if message.get("id") == request_id and "method" not in message:
                return message
