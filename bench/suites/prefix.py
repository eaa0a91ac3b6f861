"""prefix: how much of each prompt the prefix cache serves, in a replayed editing session.

The session runs through `deepfim lsp` and a real LSP client on the latency suite's workspace
(`lsp_traces.replay_workspace`: a real repository outside the training corpus): once the
repository part is warm, files are opened (Enter in the middle, a completion), a second Enter
lands in each, and a function body is typed back key by key. The server's own request log
(`logLevel: debug`, one line per completion request) gives every model call's prompt tokens
and the tokens served from the prefix cache; the rest were recomputed.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from deepfim.bench import plots
from deepfim.bench.context import BenchContext
from deepfim.bench.lsp_client import Editor, repository_warm, start, stop, wait_for
from deepfim.bench.lsp_traces import enter_again, open_and_enter, replay_workspace, type_code
from deepfim.bench.report import SuiteResult, Table
from deepfim.bench.stats import sample_figures, single

LINE = re.compile(
    r"completion (?P<path>.+?):(?P<line>\d+):(?P<col>\d+) .*?prompt (?P<prompt>\d+) tokens "
    r"\((?P<cached>\d+) from the prefix cache\)"
)


def run(ctx: BenchContext, result: SuiteResult) -> None:
    asyncio.run(_run(ctx, result))


async def _run(ctx: BenchContext, result: SuiteResult) -> None:
    log = ctx.tmp / "prefix-server.log"
    workspace, root, files, options = replay_workspace(ctx, "prefix", logLevel="debug", logFile=str(log))
    n_open, chars = ctx.pick(3, 8), ctx.pick(48, 300)
    result.settings = {
        "workspace": workspace,
        "files opened": n_open,
        "typed characters": chars,
        "options": {k: v for k, v in options.items() if k != "logFile"},
    }
    typing_file, opened = files[0], files[1 : 1 + n_open]
    client = await start(root, ctx.tmp / "prefix-cache", options)
    try:
        editor = Editor(client)
        await wait_for(client, repository_warm, ctx.pick(300, 900), "repository warm")
        for path in opened:
            await open_and_enter(editor, path)
            await enter_again(editor, path, 0.75)
        await type_code(editor, typing_file, chars, 140.0, ctx.seed)
    finally:
        await stop(client)
    calls = _parse(log)
    groups = {"file open (first request in a new file)": [], "second Enter in an open file": [], "keystroke": []}
    seen: set[str] = set()
    for path, prompt, cached in calls:
        if Path(path) == typing_file:
            if path in seen:
                groups["keystroke"].append((prompt, cached))
            seen.add(path)  # the typing file's first request is its open, timed elsewhere
        elif path not in seen:
            seen.add(path)
            groups["file open (first request in a new file)"].append((prompt, cached))
        else:
            groups["second Enter in an open file"].append((prompt, cached))
    how = "from the server's request log: every model call's prompt tokens and those served from the prefix cache"
    rows = []
    for name, pairs in groups.items():
        key = name.split(" (")[0].replace(" ", "_")
        recomputed = [p - c for p, c in pairs]
        share = [100 * c / p for p, c in pairs if p]
        result.add(
            sample_figures(f"{key}.recomputed", f"{name}: tokens recomputed", recomputed, "tokens", how, ("p50", "p95"))
        )
        result.add(
            sample_figures(f"{key}.cached_share", f"{name}: prompt served from the cache", share, "%", how, ("p50",))
        )
        rows.append([name, len(pairs), sum(p for p, _ in pairs), sum(c for _, c in pairs), sum(recomputed)])
    total_p, total_c = sum(r[2] for r in rows), sum(r[3] for r in rows)
    result.add(
        single(
            "total.cached_share",
            "whole session: prompt tokens served from the cache",
            100 * total_c / total_p if total_p else None,
            "%",
            how,
            runs=len(calls),
            statistic="sum over model calls",
        )
    )
    result.tables.append(
        Table(
            "Prompt tokens per kind of request",
            ["request", "model calls", "prompt tokens", "from the cache", "recomputed"],
            rows,
            how,
        )
    )
    result.plots.append(
        plots.bars(
            ctx.out / "prefix_cache.png",
            [r[0] for r in rows],
            {"served from the prefix cache": [r[3] for r in rows], "recomputed": [r[4] for r in rows]},
            "prompt tokens in a replayed editing session",
            "tokens (sum)",
            stacked=True,
        )
    )


def _parse(log: Path) -> list[tuple[str, int, int]]:
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = LINE.search(line)
        if m and "in flight" not in line:  # a joined call carries the timings of the call it joined
            out.append((m["path"], int(m["prompt"]), int(m["cached"])))
    return out
