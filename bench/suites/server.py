"""server: the LAN team server under 1/4/16/32 concurrent clients.

`deepfim serve` runs as its own process (TLS on loopback, the embedded model or
`--checkpoint`), one user per client, each client a `RemoteBackend` (the editors' own client)
from its own loopback address; the harness is bench/team_load.py (which also has a typing
replay with a slow reader and a vanishing client: `python -m deepfim.bench.team_load`). Each
client works in its own real file (a CPython stdlib module): one warm-up request, then
`requests` keystroke requests one after another, each with one more token of the file typed.
Per level: request latency and time to first text (p50/p99), requests/s and tokens/s.

Beside it, the engine alone in this process (bench/engine_batch.py): the same batch sizes decoding
together in `ModelRunner.step`, no HTTP and no load generator: the most batching gives here.
"""

from __future__ import annotations

from types import SimpleNamespace

from deepfim.bench import plots
from deepfim.bench.context import BenchContext
from deepfim.bench.machine import rss_mb
from deepfim.bench.report import SuiteResult, Table
from deepfim.bench.stats import percentile, sample_figures, single


def run(ctx: BenchContext, result: SuiteResult) -> None:
    from deepfim.bench.team_load import Server, sweep_level

    levels = ctx.pick([1, 4], [1, 4, 16, 32])
    _engine_alone(ctx, result, levels, ctx.pick(256, 512), ctx.pick(8, 16))
    args = SimpleNamespace(
        checkpoint=str(ctx.checkpoint) if ctx.checkpoint else None,
        threads=ctx.threads,
        cache_dir=ctx.tmp / "server-client-cache",
        requests=ctx.pick(2, 6),
        prompt_tokens=ctx.pick(256, 512),
        max_tokens=ctx.pick(8, 16),
    )
    result.settings = {
        "clients": levels,
        "requests per client": args.requests,
        "prompt tokens": args.prompt_tokens,
        "generated tokens": args.max_tokens,
        "server threads": args.threads or "torch's default",
        "server": "deepfim serve, TLS on loopback, its own process",
    }
    (ctx.tmp / "server").mkdir(exist_ok=True)
    try:
        server = Server(args, ctx.tmp / "server", max(levels))
    except SystemExit as exc:  # the harness's own way of giving up, as a script
        raise RuntimeError(str(exc)) from None
    rows = []
    try:
        for n in levels:
            r = sweep_level(server, n, args)
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
                f"{n} clients at once, {args.requests} sequential keystroke requests each ({args.prompt_tokens}+ "
                f"prompt tokens, {args.max_tokens} generated): submit -> result"
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
    result.plots.append(
        plots.lines(
            ctx.out / "server_sweep.png",
            [r[0] for r in rows],
            {"p50 latency (ms)": [r[2] for r in rows], "p99 latency (ms)": [r[3] for r in rows]},
            "team server: latency and throughput vs clients",
            "concurrent clients",
            "ms",
            right={"req/s": [r[6] for r in rows]},
            right_label="requests / s",
        )
    )


def _engine_alone(ctx: BenchContext, result: SuiteResult, sizes: list[int], prompt_tokens: int,
                  new_tokens: int) -> None:  # fmt: skip
    from deepfim.bench.engine_batch import ROUNDS, run_decode_rows

    rows = run_decode_rows(sizes, prompt_tokens, new_tokens, ctx.checkpoint)
    base = rows[0]["tok_per_s"]
    result.tables.append(
        Table(
            "Engine alone: sequences decoding together",
            ["sequences", "steps", "ms per step", "ms per token", "tokens/s", "x 1 sequence"],
            [
                [r["batch"], r["steps"], r["ms_per_step"], r["ms_per_token"], r["tok_per_s"], r["tok_per_s"] / base]
                for r in rows
            ],  # fmt: skip
            f"this process, ModelRunner.step with every sequence in each step (one C call on the CPU): "
            f"{prompt_tokens}-token prompts (stdlib files), {new_tokens} greedy tokens each, no drafts; "
            f"decode wall time, median of {ROUNDS} rounds",
        )
    )
    last = rows[-1]
    result.add(
        single(
            f"engine_alone.x{last['batch']}",
            f"engine alone: {last['batch']} sequences together vs 1, decode tokens/s",
            last["tok_per_s"] / base,
            "x",
            "tokens/s ratio, same run (the ceiling of what batching gives the team server here)",
            runs=ROUNDS,
            statistic=f"median of {ROUNDS} rounds each",
        )
    )
    ctx.log(f"server: engine alone, {last['batch']} sequences: x{last['tok_per_s'] / base:.2f} decode tokens/s")
