"""Team-server load: a concurrency sweep and a replay of a team typing, against `deepfim serve`.

Starts `deepfim serve` (TLS, loopback, `--checkpoint` or the embedded model) as its own process,
one user per client, and drives it with `RemoteBackend` clients from this process.

1. Sweep: for each level of `--clients` (default 1,4,16,32), every client first sends one
   warm-up request (its file enters its prefix cache; not timed), then `--requests` keystroke
   requests one after another: its file (real code, a CPython stdlib module of its own) of
   `--prompt-tokens`, one more of the file's tokens typed each time, `--max-tokens` new tokens.
   Prints p50/p99 latency and time to first text (ms), requests/s and tokens/s per level, and
   the throughput of each level relative to one client.
2. Replay (`--replay-s`, 0 to skip): `--replay-clients` users type for that long (bursts of
   keystrokes 120 ms apart, pauses of 1-3 s; each keystroke supersedes the user's request in
   flight, as the language server does). Beside them one slow reader (streams, then stops
   reading) and one client that vanishes mid-stream (RST) again and again. Prints the healthy
   clients' completed requests, errors and latency, and the server's resident memory over time.

    .venv/bin/python -m deepfim.bench.team_load [--checkpoint DIR] [--clients 1,4,16,32] [--replay-s 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from deepfim.bench.corpus import stdlib_token_files
from deepfim.engine.api import CancelledError, CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server.auth import add_user
from deepfim.engine.server.client import RemoteBackend
from deepfim.engine.server.tls import client_context, make_self_signed_cert


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _address_of(user: int) -> str:
    """Each simulated user connects from its own loopback address, as each would from its own
    machine (the server limits connections per address)."""
    return f"127.0.{1 + user // 250}.{1 + user % 250}"


def _code(tok: Tokenizer, clients: int, tokens: int) -> list[list[int]]:
    """Each client's own real code (a CPython stdlib module): its first `tokens` tokens are the
    file it works in, the rest is what it types, token by token."""
    try:
        return stdlib_token_files(tok, clients, tokens + 4000)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


class Server:
    """`deepfim serve` in a subprocess, with its users."""

    def __init__(self, args, tmp: Path, users: int) -> None:
        self.cert, key = make_self_signed_cert(tmp / "tls", ["localhost"])
        self.tokens = [add_user(tmp / "users.json", f"bench{i:02d}") for i in range(users)]
        cmd = [sys.executable, "-m", "deepfim.cli", "serve", "--port", "0", "--users", str(tmp / "users.json"),
               "--cert", str(self.cert), "--key", str(key), "--rate", "1000", "--burst", "1000",
               "--max-inflight", "64", "--admin-token-file", str(tmp / "admin")]  # fmt: skip
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp / "cache"), "DEEPFIM_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        line = ""
        while "deepfim team server:" not in line:
            if self.proc.poll() is not None:
                raise SystemExit(f"deepfim serve did not start: {line}")
            line = self.proc.stderr.readline()
        self.port = int(re.search(r"https 127\.0\.0\.1:(\d+),", line).group(1))
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # drain its log
        self.address = f"127.0.0.1:{self.port}"
        self.admin_file = tmp / "admin"

    def cache_stats(self) -> dict:
        """The prefix cache's own accounting, from the admin's /v1/stats."""
        import http.client

        token = self.admin_file.read_text().strip()
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=client_context(self.cert), timeout=30)
        conn.request("GET", "/v1/stats", headers={"Authorization": f"Bearer {token}"})
        stats = json.loads(conn.getresponse().read())
        conn.close()
        return next(iter(stats["backend"]["checkpoints"].values()))["cache"]

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def sweep_level(server: Server, clients: int, args) -> dict:
    backends = [RemoteBackend(server.address, server.tokens[i], str(server.cert), cache_dir=args.cache_dir,
                              local_address=_address_of(i)) for i in range(clients)]  # fmt: skip
    tok = Tokenizer.from_file(backends[0].tokenizer_path)
    code = _code(tok, clients, args.prompt_tokens)
    params = SamplingParams(max_tokens=args.max_tokens)
    for i, backend in enumerate(backends):  # warm-up: each user's file enters their prefix cache
        backend.submit(CompletionRequest(code[i][: args.prompt_tokens], params)).result(600)
    latencies, first_text, generated, lock = [], [], [0], threading.Lock()
    barrier = threading.Barrier(clients)

    def work(i: int) -> None:
        barrier.wait()
        for r in range(args.requests):
            first: list[float] = []
            start = time.perf_counter()
            handle = backends[i].submit(
                CompletionRequest(code[i][: args.prompt_tokens + 1 + r], params),  # one more token typed
                lambda _i, _t, first=first: first or first.append(time.perf_counter()),
            )
            result = handle.result(600)
            end = time.perf_counter()
            with lock:
                latencies.append((end - start) * 1000)
                first_text.append(((first[0] if first else end) - start) * 1000)
                generated[0] += result.timings.generated_tokens

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    for b in backends:
        b.close()
    return {
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": _percentile(latencies, 0.99),
        "ttft_p50_ms": statistics.median(first_text),
        "ttft_p99_ms": _percentile(first_text, 0.99),
        "req_per_s": len(latencies) / wall,
        "tok_per_s": generated[0] / wall,
        "latencies": latencies,  # the samples, for `deepfim bench server`'s spreads
        "first_text": first_text,
    }


class Typist:
    """One user typing: bursts of keystrokes, each superseding the request in flight."""

    def __init__(self, server: Server, index: int, args, stop: threading.Event) -> None:
        self.backend = RemoteBackend(server.address, server.tokens[index], str(server.cert), cache_dir=args.cache_dir,
                                     local_address=_address_of(index))  # fmt: skip
        tok = Tokenizer.from_file(self.backend.tokenizer_path)
        self.code = _code(tok, index + 1, args.prompt_tokens)[index]
        self.at = args.prompt_tokens
        self.params = SamplingParams(max_tokens=args.max_tokens)
        self.rng = random.Random(index)
        self.stop = stop
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.superseded = 0
        self.backend.submit(CompletionRequest(self.code[: self.at], self.params)).result(600)  # warm-up

    def run(self) -> None:
        handle = None
        while not self.stop.is_set():
            for _ in range(self.rng.randint(3, 8)):
                self.at = min(self.at + 1, len(self.code) - 1)  # the next token of the real file
                if handle is not None and not handle.done():
                    handle.cancel()
                    self.superseded += 1
                handle = self._keystroke(self.code[: self.at])
                self.stop.wait(0.12)
            if handle is not None:
                self._finish(handle)
                handle = None
            self.stop.wait(self.rng.uniform(1.0, 3.0))

    def _keystroke(self, prompt: list[int]):
        started = time.perf_counter()
        handle = self.backend.submit(CompletionRequest(prompt, self.params))
        handle.future.add_done_callback(lambda fut: self._done(fut, started))
        return handle

    def _done(self, fut, started: float) -> None:
        try:
            fut.result()
            self.latencies.append((time.perf_counter() - started) * 1000)
        except CancelledError:
            pass  # superseded by the next keystroke: the editor's own doing
        except Exception as exc:
            self.errors.append(repr(exc))

    def _finish(self, handle) -> None:
        try:
            handle.result(60)
        except Exception:
            pass  # counted by _done


def _misbehaving(server: Server, token: str, source: str, stop: threading.Event, vanish: bool) -> int:
    """A raw TLS client that streams, then stops reading (slow reader) or resets mid-stream (vanish)."""
    body = json.dumps({"prompt": [0, *range(100, 400)], "max_tokens": 256, "stream": True}).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    rounds = 0
    while not stop.is_set():
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0))
        sock = client_context(server.cert).wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(head + body)
        sock.recv(4096)
        rounds += 1
        if vanish:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST, no goodbye
            stop.wait(0.5)
        else:
            stop.wait(20)  # holds the stream without reading a byte
            sock.close()
    return rounds


def replay(server: Server, args) -> None:
    stop = threading.Event()
    typists = [Typist(server, i, args, stop) for i in range(args.replay_clients)]
    others = {}
    for name, vanish in (("slow reader", False), ("vanishing", True)):
        user = args.replay_clients + len(others)
        token, source = server.tokens[user], _address_of(user)
        thread = threading.Thread(target=lambda t=token, s=source, v=vanish, n=name: others.__setitem__(
            n, _misbehaving(server, t, s, stop, v)), daemon=True)  # fmt: skip
        others[name] = 0
        thread.start()
    rss = [server.rss_mb()]
    threads = [threading.Thread(target=t.run) for t in typists]
    for t in threads:
        t.start()
    started = time.monotonic()
    while time.monotonic() - started < args.replay_s:
        time.sleep(1.0)
        rss.append(server.rss_mb())
    stop.set()
    for t in threads:
        t.join(120)
    latencies = [ms for t in typists for ms in t.latencies]
    errors = [e for t in typists for e in t.errors]
    print(f"\nreplay: {args.replay_clients} typing clients x {args.replay_s:.0f} s, + 1 slow reader, + 1 vanishing")
    print(f"  healthy clients: {len(latencies)} completed, {sum(t.superseded for t in typists)} superseded, "
          f"{len(errors)} errors; latency p50 {statistics.median(latencies):.0f} ms, "
          f"p99 {_percentile(latencies, 0.99):.0f} ms")  # fmt: skip
    for e in errors[:5]:
        print(f"    error: {e}")
    third = max(1, len(rss) // 3)
    print(
        f"  server RSS MB: start {rss[0]:.0f}, max {max(rss):.0f}, end {rss[-1]:.0f}; "
        f"mean of first third {statistics.mean(rss[:third]):.0f}, last third {statistics.mean(rss[-third:]):.0f}"
    )
    print(f"  prefix cache (its budget bounds the growth): {json.dumps(server.cache_stats())}")
    for t in typists:
        t.backend.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint dir (default: the embedded model)")
    parser.add_argument("--clients", default="1,4,16,32")
    parser.add_argument("--requests", type=int, default=20, help="per client and level")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--replay-s", type=float, default=60.0)
    parser.add_argument("--replay-clients", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="the server's engine threads (1 on a busy machine)")
    args = parser.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="deepfim-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        args.cache_dir = tmp / "client-cache"
        server = Server(args, tmp, max([*levels, args.replay_clients + 2]))
        try:
            print(f"{'clients':>7} {'reqs':>5} {'p50 ms':>8} {'p99 ms':>8} {'ttft50':>7} {'ttft99':>7} "
                  f"{'req/s':>7} {'tok/s':>7} {'x 1 client':>10}")  # fmt: skip
            base = None
            for n in levels:
                r = sweep_level(server, n, args)
                base = base or r["req_per_s"]
                print(f"{r['clients']:>7} {r['requests']:>5} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                      f"{r['ttft_p50_ms']:>7.1f} {r['ttft_p99_ms']:>7.1f} {r['req_per_s']:>7.1f} "
                      f"{r['tok_per_s']:>7.0f} {r['req_per_s'] / base:>10.2f}", flush=True)  # fmt: skip
            if args.replay_s > 0:
                replay(server, args)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
