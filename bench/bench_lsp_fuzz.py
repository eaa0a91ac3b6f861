"""The language server under a long seeded fuzz run: crashes, hangs, answers, memory.

Sends `--messages` adversarial LSP messages (tests/lsp_server/lsp_fuzz_messages.py: framing,
envelopes, params, positions, huge and odd text, cancel storms, ordinary editing and
completion in between) to a real `deepfim lsp` over stdio, then checks that every request
owed an answer got exactly one, and prints the figures: crashes, hangs, answers, errors by
code, status messages shown, resident memory over the run (sampled from /proc). Then, on a
fresh server: how long a `--big-buffer-mb` didOpen holds up the requests sent right after it
(median of 3; the buffer is over the 1 MB limit, so the completion answers an empty list).

    .venv/bin/python bench/bench_lsp_fuzz.py                      # 20,000 messages, test double engine
    .venv/bin/python bench/bench_lsp_fuzz.py --engine embedded     # the real engine and embedded model

The CI test (tests/lsp_server/test_lsp_fuzz.py) runs the same traffic, 2,000 messages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lsp_server"))

from lsp_fuzz_client import FuzzReport, RawClient, _initialize, run_fuzz  # noqa: E402
from lsp_fuzz_messages import frame  # noqa: E402


def memory_summary(samples: list[tuple[int, float]]) -> dict:
    """Resident MB: first sample, peak, last, and the trend over the second half (MB per 1,000
    messages, least squares): a leak grows linearly with traffic, a bounded server does not."""
    sent = np.array([s for s, _ in samples], dtype=float)
    mb = np.array([m for _, m in samples])
    half = sent >= sent[-1] / 2
    slope = float(np.polyfit(sent[half], mb[half], 1)[0] * 1000) if half.sum() >= 3 else float("nan")
    return {"first_mb": round(float(mb[0]), 1), "peak_mb": round(float(mb.max()), 1),
            "last_mb": round(float(mb[-1]), 1), "second_half_mb_per_1k": round(slope, 2)}  # fmt: skip


def big_buffer_seconds(command: list[str], root: Path, env: dict, log: Path, megabytes: float) -> list[float]:
    """Seconds from sending a huge didOpen to the answers of a completion in it and a
    status request sent right behind it, three times."""
    client = RawClient(command, env, log)
    times = []
    try:
        _initialize(client, root, 120)
        line = "value = compute(1, 2)  # padding\n"
        for rep in range(3):
            uri = (root / f"huge{rep}.py").as_uri()
            item = {"uri": uri, "languageId": "python", "version": 1, "text": line * int(megabytes * 1e6 / len(line))}
            body = json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}})
            params = {"textDocument": {"uri": uri}, "position": {"line": 1000, "character": 0},
                      "context": {"triggerKind": 1}}  # fmt: skip
            started = time.perf_counter()
            client.send(frame(body.encode()))
            client.request(f"c{rep}", "textDocument/inlineCompletion", params)
            client.request(f"s{rep}", "deepfim/status", {})
            client.wait_for([f"c{rep}", f"s{rep}"], 300)
            times.append(round(time.perf_counter() - started, 3))
    finally:
        client.proc.kill()
        client.close(timeout=5)
    return times


def summary(report: FuzzReport, engine: str) -> dict:
    status = report.final_status or {}
    return {
        "engine": engine,
        "messages": report.messages,
        "seconds": round(report.seconds, 1),
        "messages_per_s": round(report.messages / report.seconds, 1) if report.seconds else None,
        "crashed": report.crashed,
        "exit_code": report.exit_code,
        "unanswered (hangs)": len(report.unanswered),
        "answered_twice": len(report.answered_twice),
        "wrong_error_code": len(report.wrong_code),
        "internal_errors": len(report.internal_errors),
        "completions_with_suggestions": report.suggestions,
        "null_id_errors": report.null_id_errors,
        "status_messages_shown": len(report.status_messages),
        "problems_logged": (status.get("protocol") or {}).get("problems"),
        "in_flight_at_end": (status.get("protocol") or {}).get("in_flight"),
        "memory": memory_summary(report.rss_mb) if report.rss_mb else None,
        # the real engine's prefix cache grows to its budget by design (1 GiB by default)
        "prefix_cache_mb": [
            round(c["cache"]["bytes"] / 2**20, 1)
            for c in ((status.get("engine") or {}).get("checkpoints") or {}).values()
        ],  # fmt: skip
        "by_category": dict(sorted(report.by_category.items(), key=lambda kv: -kv[1])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--engine", choices=("double", "embedded"), default="double",
                        help="double: the scripted test double (fast); embedded: the real engine")  # fmt: skip
    parser.add_argument("--huge-mb", type=float, default=2.5, help="size of the oversize buffers opened")
    parser.add_argument("--big-buffer-mb", type=float, default=10.0, help="0: skip the big-buffer timing")
    parser.add_argument("--workspace", type=Path, default=REPO / "examples" / "shop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="deepfim-fuzz-"))
    try:
        root = tmp / "ws"
        shutil.copytree(args.workspace, root, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        if args.engine == "double":
            command = [sys.executable, str(REPO / "tests" / "lsp_server" / "lsp_double_server.py"), "--step-ms=1"]
        else:
            command = [sys.executable, "-m", "deepfim.cli", "lsp"]
        env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp / "cache")}
        report = run_fuzz(command, root, args.messages, args.seed, env, tmp / "server.log",
                          rss_every=500, huge_bytes=int(args.huge_mb * 1e6))  # fmt: skip
        result = summary(report, args.engine)
        if args.big_buffer_mb:
            seconds = big_buffer_seconds(command, root, env, tmp / "big.log", args.big_buffer_mb)
            result[f"{args.big_buffer_mb:g} MB didOpen -> next answers (s)"] = {
                "runs": seconds,
                "median": sorted(seconds)[1],
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key:>30}: {value}")
    clean = not (report.crashed or report.unanswered or report.answered_twice or report.internal_errors)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
