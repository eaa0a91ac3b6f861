"""Team-server concurrency sweep: 1/4/16 clients on loopback TLS, latency p50/p99 per level.

Starts `deepfim serve`'s server in-process around the real engine (`--checkpoint`), one user
per client, each client sending `--requests` completions one after another with a prompt
of `--prompt-tokens` (a distinct file per client, so prefix caches do not help across
clients) and `--max-tokens` new tokens. Prints, per concurrency level: request latency and
time to first text (p50/p99, ms), requests/s and generated tokens/s over the level.

    .venv/bin/python bench/bench_server.py --checkpoint engine/default_model
    .venv/bin/python bench/bench_server.py --address gpu-box.lan:7431 --token-file toks.txt --ca cert.pem

`--address` measures a server that is already running (one token per line in
`--token-file`, one per client). `--test-double` wires the test double from
tests/engine/server instead of an engine: it checks the harness, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server.auth import UserStore, add_user
from deepfim.engine.server.client import RemoteBackend
from deepfim.engine.server.limits import Limits
from deepfim.engine.server.team_server import ServerThread
from deepfim.engine.server.tls import make_self_signed_cert, server_context


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _prompt(tok: Tokenizer, client: int, tokens: int) -> list[int]:
    unit = tok.encode(f"def handler_{client}(event, context):\n    value = event['key_{client}'] * 2\n")
    ids = (unit * (tokens // max(1, len(unit)) + 1))[:tokens]
    return [tok.special.bos, *ids]


def run_level(address: str, tokens: list[str], ca: str | None, clients: int, args) -> dict:
    backends = [RemoteBackend(address, tokens[i], ca, cache_dir=args.cache_dir) for i in range(clients)]
    tok = Tokenizer.from_file(backends[0].tokenizer_path)
    latencies: list[float] = []
    first_text: list[float] = []
    generated = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def work(i: int) -> None:
        backend = backends[i]
        barrier.wait()
        for r in range(args.requests):
            prompt = _prompt(tok, i, args.prompt_tokens) + tok.encode(f"# request {r}\n")
            first: list[float] = []
            start = time.perf_counter()
            handle = backend.submit(
                CompletionRequest(prompt, SamplingParams(max_tokens=args.max_tokens)),
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
    }


def _local_server(args, tmp: Path, max_clients: int):
    if args.test_double:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine" / "server"))
        from conftest import write_byte_tokenizer
        from teamserver_double import PrefixCacheEchoBackend

        backend = PrefixCacheEchoBackend(str(write_byte_tokenizer(tmp / "tokenizer.json")))
    else:
        from deepfim.engine.backends import BackendSpec, make_backend

        backend = make_backend(BackendSpec(args.checkpoint, args.expert_checkpoint))
    tokens = [add_user(tmp / "users.json", f"bench{i:02d}") for i in range(max_clients)]
    cert, key = make_self_signed_cert(tmp / "tls", ["localhost"])
    limits = Limits(requests_per_second=1000.0, burst=1000, max_backend_inflight=args.max_backend_inflight)
    thread = ServerThread(
        backend, UserStore(tmp / "users.json"), ssl_context=server_context(cert, key), limits=limits
    ).start()
    return thread, backend, tokens, str(cert)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint dir (default: the embedded model)")
    parser.add_argument("--expert-checkpoint")
    parser.add_argument("--address", help="bench a running server instead (host:port)")
    parser.add_argument("--token-file", help="with --address: one user token per line")
    parser.add_argument("--ca", help="with --address: the server's certificate")
    parser.add_argument("--test-double", action="store_true", help="harness check without an engine")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=8, help="per client")
    parser.add_argument("--prompt-tokens", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-backend-inflight", type=int, default=16)
    args = parser.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="deepfim-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        args.cache_dir = tmp / "client-cache"
        thread = backend = None
        if args.address:
            tokens = Path(args.token_file).read_text().split()
            address, ca = args.address, args.ca
        else:
            thread, backend, tokens, ca = _local_server(args, tmp, max(levels))
            address = f"127.0.0.1:{thread.port}"
        if len(tokens) < max(levels):
            parser.error(f"need {max(levels)} tokens, have {len(tokens)}")
        print(
            f"{'clients':>7} {'reqs':>5} {'p50 ms':>9} {'p99 ms':>9} "
            f"{'ttft50':>8} {'ttft99':>8} {'req/s':>7} {'tok/s':>8}"
        )
        try:
            for n in levels:
                r = run_level(address, tokens, ca, n, args)
                print(
                    f"{r['clients']:>7} {r['requests']:>5} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
                    f"{r['ttft_p50_ms']:>8.1f} {r['ttft_p99_ms']:>8.1f} {r['req_per_s']:>7.1f} {r['tok_per_s']:>8.1f}"
                )
        finally:
            if thread is not None:
                thread.stop()
                backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
