"""How soon the things that must give up do: the figures the tests check only as behaviour.

* unreachable team server: `RemoteBackend` on a closed loopback port until "cannot connect"
  (the client's `timeout_s` is the ceiling);
* stalled half frame: a client that sends the first bytes of a frame and stops, until the
  server's fatal "timeout" reply (against the configured `frame_timeout_s`);
* evaluation sandbox: a program that forks and loops forever under `run_program(timeout=...)`,
  until it returns with its whole process group killed.
Prints the median and the max over `--repeats` runs, and each one's overshoot of its timeout.
No model is involved: the team server wraps the test double of tests/engine/server.

    .venv/bin/python bench/bench_timeouts.py [--repeats 5] [--frame-timeout 0.5] [--sandbox-timeout 1.0]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine" / "server"))
from team_support import TEST_LIMITS, RawConn, write_byte_tokenizer  # noqa: E402
from teamserver_double import PrefixCacheEchoBackend  # noqa: E402

from deepfim.engine.evaluation.humaneval import run_program  # noqa: E402
from deepfim.engine.server.auth import UserStore, add_user  # noqa: E402
from deepfim.engine.server.client import RemoteBackend, RemoteBackendError  # noqa: E402
from deepfim.engine.server.team_server import ServerThread  # noqa: E402
from deepfim.engine.server.tls import make_self_signed_cert, server_context  # noqa: E402

FORKING_LOOP = "import os\nos.fork()\nwhile True:\n    pass\n"


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def unreachable(ca: Path, cache: Path, timeout_s: float) -> None:
    try:
        RemoteBackend("127.0.0.1:1", "t", str(ca), cache_dir=cache, timeout_s=timeout_s)
    except RemoteBackendError as exc:
        assert "cannot connect" in str(exc), exc
        return
    raise AssertionError("connected to a closed port")


def stalled_half_frame(port: int, ca: Path, token: str) -> float:
    conn = RawConn(port, ca, timeout=30)
    try:
        conn.hello(token)
        conn.send_raw(struct.pack(">I", 100) + b"\x85")  # a 100-byte frame of which one byte comes
        t0 = time.perf_counter()
        reply = conn.recv()
        assert reply["code"] == "timeout" and reply["fatal"], reply
        return time.perf_counter() - t0
    finally:
        conn.close()


def sandbox(timeout: float) -> None:
    result = run_program(FORKING_LOOP, timeout=timeout)
    assert result.timed_out, result


def row(name: str, values: list[float], limit: float) -> str:
    median, worst = statistics.median(values), max(values)
    return (f"{name:<24} median {median * 1e3:8.1f} ms  max {worst * 1e3:8.1f} ms  "
            f"timeout {limit * 1e3:7.0f} ms  overshoot (median) {(median - limit) * 1e3:+8.1f} ms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--connect-timeout", type=float, default=2.0, help="RemoteBackend timeout_s")
    parser.add_argument("--frame-timeout", type=float, default=TEST_LIMITS.frame_timeout_s)
    parser.add_argument("--sandbox-timeout", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepfim-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        cert, key = make_self_signed_cert(tmp / "tls", ["127.0.0.1"])
        token = add_user(tmp / "users.json", "bench")
        backend = PrefixCacheEchoBackend(str(write_byte_tokenizer(tmp / "tokenizer.json")))
        limits = dataclasses.replace(TEST_LIMITS, frame_timeout_s=args.frame_timeout)
        server = ServerThread(backend, UserStore(tmp / "users.json"), host="127.0.0.1",
                              ssl_context=server_context(cert, key), limits=limits, http_port=None).start()  # fmt: skip
        try:
            connect = [
                seconds(lambda: unreachable(cert, tmp / "cache", args.connect_timeout)) for _ in range(args.repeats)
            ]
            frames = [stalled_half_frame(server.port, cert, token) for _ in range(args.repeats)]
        finally:
            server.stop()
            backend.close()
    kills = [seconds(lambda: sandbox(args.sandbox_timeout)) for _ in range(args.repeats)]
    print(f"{args.repeats} runs each")
    print(row("unreachable server", connect, args.connect_timeout))
    print(row("stalled half frame", frames, args.frame_timeout))
    print(row("sandbox fork + loop", kills, args.sandbox_timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
