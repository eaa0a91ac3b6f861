"""server: the LAN team server under 1/4/16/32 concurrent clients.

`deepfim serve` runs as its own process (TLS on loopback, the embedded model or
`--checkpoint`), one user per client; the clients are `RemoteBackend`s in this process, the
editors' own client. Each client works in its own real file (a CPython stdlib module): one
warm-up request (its file enters the cache; not timed), then `requests` keystroke requests
one after another, each with one more token of the file typed. Per level: request latency
and time to first text (p50/p99), requests/s and generated tokens/s over the level's wall time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

from deepfim.bench import plots
from deepfim.bench.context import BenchContext
from deepfim.bench.corpus import stdlib_files
from deepfim.bench.machine import rss_mb
from deepfim.bench.report import SuiteResult, Table
from deepfim.bench.stats import percentile, sample_figures, single

PORT_LINE = re.compile(r"deepfim team server: (?:msgpack|https) [^ ]+?:(\d+)")


class Server:
    """`deepfim serve` in a subprocess with `users` users; `address`, `tokens`, `cert`."""

    def __init__(self, ctx: BenchContext, users: int) -> None:
        from deepfim.engine.server.auth import add_user
        from deepfim.engine.server.tls import make_self_signed_cert

        tmp = ctx.tmp / "server"
        self.cert, key = make_self_signed_cert(tmp / "tls", ["localhost"])
        self.tokens = [add_user(tmp / "users.json", f"bench{i:02d}") for i in range(users)]
        cmd = [
            sys.executable,
            "-m",
            "deepfim.cli",
            "serve",
            "--port",
            "0",
            "--no-http",
            "--users",
            str(tmp / "users.json"),
            "--cert",
            str(self.cert),
            "--key",
            str(key),
            "--rate",
            "1000",
            "--burst",
            "1000",
            "--admin-token-file",
            str(tmp / "admin"),
        ]
        if ctx.checkpoint:
            cmd += ["--checkpoint", str(ctx.checkpoint)]
        env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp / "cache"), "DEEPFIM_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        lines = []
        while True:
            line = self.proc.stderr.readline()
            lines.append(line)
            match = PORT_LINE.search(line)
            if match:
                break
            if not line and self.proc.poll() is not None:
                raise RuntimeError("deepfim serve did not start: " + "".join(lines[-5:]))
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # drain its log
        self.address = f"127.0.0.1:{match.group(1)}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _files(tok, clients: int, tokens: int) -> list[list[int]]:
    """Each client's own file: a stdlib module with more than `tokens` + its typing."""
    out = []
    for _, text in stdlib_files(1 << 30):
        ids = tok.encode(text)
        if len(ids) >= tokens + 64:
            out.append([tok.special.bos, *ids])
        if len(out) == clients:
            return out
    raise RuntimeError(f"not enough stdlib files of {tokens + 64} tokens for {clients} clients")


def sweep_level(server: Server, clients: int, ctx: BenchContext, requests: int, prompt: int, new: int) -> dict:
    from deepfim.engine.api import CompletionRequest, SamplingParams
    from deepfim.engine.model.tokenizer import Tokenizer
    from deepfim.engine.server.client import RemoteBackend

    cache = ctx.tmp / f"server-client-{clients}"
    backends = [
        RemoteBackend(server.address, server.tokens[i], str(server.cert), cache_dir=cache) for i in range(clients)
    ]
    try:
        tok = Tokenizer.from_file(backends[0].tokenizer_path)
        code = _files(tok, clients, prompt + requests)
        params = SamplingParams(max_tokens=new)
        for i, backend in enumerate(backends):  # each user's file enters the cache first (not timed)
            backend.submit(CompletionRequest(code[i][:prompt], params)).result(600)
        latencies, first_text, generated, lock = [], [], [0], threading.Lock()
        barrier = threading.Barrier(clients)

        def work(i: int) -> None:
            barrier.wait()
            for r in range(requests):
                first: list[float] = []
                start = time.perf_counter()
                handle = backends[i].submit(
                    CompletionRequest(code[i][: prompt + 1 + r], params),
                    lambda _i, _t, first=first: first or first.append(time.perf_counter()),
                )
                result = handle.result(600)
                end = time.perf_counter()
                with lock:
                    latencies.append((end - start) * 1000)
                    first_text.append(((first[0] if first else end) - start) * 1000)
                    generated[0] += result.timings.generated_tokens or len(result.candidates[0].token_ids)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        for b in backends:
            b.close()
    return {
        "clients": clients,
        "latencies": latencies,
        "first_text": first_text,
        "wall": wall,
        "req_per_s": len(latencies) / wall,
        "tok_per_s": generated[0] / wall,
    }


def run(ctx: BenchContext, result: SuiteResult) -> None:
    levels = ctx.pick([1, 4], [1, 4, 16, 32])
    requests, prompt, new = ctx.pick(2, 6), ctx.pick(256, 1024), ctx.pick(8, 16)
    result.settings = {
        "clients": levels,
        "requests per client": requests,
        "prompt tokens": prompt,
        "generated tokens": new,
        "server": "deepfim serve, TLS on loopback, own process",
    }
    server = Server(ctx, max(levels))
    rows, levels_done = [], []
    try:
        sweep_level(server, 1, ctx, 2, prompt, new)  # the server's first calls (allocator, C step build): not reported
        for n in levels:
            r = sweep_level(server, n, ctx, requests, prompt, new)
            levels_done.append(r)
            lat, ttft = r["latencies"], r["first_text"]
            rows.append(
                [
                    n,
                    len(lat),
                    percentile(lat, 0.5),
                    percentile(lat, 0.99),
                    percentile(ttft, 0.5),
                    percentile(ttft, 0.99),
                    r["req_per_s"],
                    r["tok_per_s"],
                ]
            )
            how = (
                f"{n} clients at once, {requests} sequential keystroke requests each ({prompt}+ prompt tokens, "
                f"{new} generated): submit -> result"
            )
            result.add(
                sample_figures(f"clients_{n}.latency", f"{n} clients: request latency", lat, "ms", how, ("p50", "p99"))
            )
            result.add(
                single(
                    f"clients_{n}.req_per_s",
                    f"{n} clients: throughput",
                    r["req_per_s"],
                    "req/s",
                    "requests completed / wall time of the level",
                    runs=len(lat),
                    statistic="total over the level",
                )
            )
            ctx.log(
                f"server: {n} clients: p50 {rows[-1][2]:.0f} ms, p99 {rows[-1][3]:.0f} ms, {r['req_per_s']:.1f} req/s"
            )
        result.add(
            single(
                "server_rss_mb",
                "server resident memory at the end",
                rss_mb(server.proc.pid),
                "MB",
                "VmRSS of the deepfim serve process after the sweep",
            )
        )
    finally:
        server.stop()
    result.tables.append(
        Table(
            "Client sweep",
            ["clients", "requests", "p50 ms", "p99 ms", "first text p50 ms", "first text p99 ms", "req/s", "tok/s"],
            rows,
            "latency and first text: submit -> result / first streamed text, per request; "
            "throughput over the level's wall time",
        )
    )
    xs = [r[0] for r in rows]
    result.plots.append(
        plots.lines(
            ctx.out / "server_sweep.png",
            xs,
            {"p50 latency (ms)": [r[2] for r in rows], "p99 latency (ms)": [r[3] for r in rows]},
            "team server: latency and throughput vs clients",
            "concurrent clients",
            "ms",
            right={"req/s": [r[6] for r in rows]},
            right_label="requests / s",
        )
    )
