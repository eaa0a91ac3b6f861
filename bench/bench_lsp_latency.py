"""Keystroke-to-suggestion latency of the language server, replaying a typing trace.

Starts `deepfim lsp` as a subprocess and drives it over stdio with pygls' LSP client, the
way an editor does: each keystroke is a `didChange` followed by an automatic
`textDocument/inlineCompletion`; a keystroke arriving before the previous answer cancels
that request (`$/cancelRequest`). Newlines arrive with the next line's indentation (editor
auto-indent); gaps between keys are drawn from a seeded log-normal distribution (median
`--median-gap-ms`) with longer pauses after punctuation and line ends.

The workspace (default examples/shop, copied to a temporary directory) is indexed and the
model loaded and warmed up before the trace starts. Prints p50/p95 from keystroke to
response, the server's split of each answered request into context, queue, prefill,
decode and post-processing (from the item's command arguments), and how many keystrokes
were answered from the typing-through cache or by joining a model call in flight.

    .venv/bin/python bench/bench_lsp_latency.py                  # embedded model, instant mode
    .venv/bin/python bench/bench_lsp_latency.py --test-double    # harness check only

`--test-double` runs the server with the test double of tests/lsp_server instead of an
engine: it checks the harness, its model timings mean nothing. `--random-weights` runs the
real engine on a checkpoint with the embedded model's shape and random weights (special
tokens masked): prefill and per-token costs are real, output lengths and typing-through
hits are not (random text rarely ends a line or matches what is typed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from lsprotocol import types
from pygls.lsp.client import LanguageClient

REPO = Path(__file__).resolve().parents[1]
GOAL_P50_MS = 50.0

# typed into the blank line 23 of examples/shop/shop/cart.py
TRACE = """        return pricing.apply_discount(self.subtotal(), self.customer.tier)

    def item_count(self) -> int:
        \"\"\"How many units the cart holds.\"\"\"
        return sum(item.quantity for item in self.items)
"""
TRACE_FILE = "shop/cart.py"
TRACE_LINE = 22  # 0-based


def keystrokes(text: str) -> list[str]:
    """Keys as an editor sends them: a newline carries the next line's indentation."""
    keys, lines = [], text.split("\n")
    for i, line in enumerate(lines):
        body = line.lstrip(" ") if i else line
        if i:
            keys.append("\n" + line[: len(line) - len(body)])
        keys.extend(body)
    return [k for k in keys if k]


def gaps_ms(keys: list[str], median: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    gaps = []
    for key in keys:
        gap = median * rng.lognormvariate(0.0, 0.45)
        if key.startswith("\n"):
            gap += rng.uniform(300, 900)  # reading what was written
        elif key in "(),.:":
            gap += rng.uniform(0, 150)
        gaps.append(gap)
    return gaps


def _position_after(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    column_text = text[text.rfind("\n", 0, offset) + 1 : offset]
    return types.Position(line=line, character=len(column_text.encode("utf-16-le")) // 2)


class Session:
    def __init__(self, client: LanguageClient, uri: str, text: str, offset: int) -> None:
        self.client, self.uri, self.text, self.offset, self.version = client, uri, text, offset, 1
        self.ids = 0

    def type_key(self, key: str) -> None:
        here = _position_after(self.text, self.offset)
        self.text = self.text[: self.offset] + key + self.text[self.offset :]
        self.offset += len(key)
        self.version += 1
        change = types.TextDocumentContentChangePartial(range=types.Range(start=here, end=here), text=key)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
                content_changes=[change],
            )
        )

    def request(self) -> tuple[str, asyncio.Future]:
        self.ids += 1
        msg_id = f"k{self.ids}"
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri),
            position=_position_after(self.text, self.offset),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
        future = self.client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        return msg_id, asyncio.wrap_future(future)

    def cancel(self, msg_id: str) -> None:
        self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))


async def start(command: list[str], root: Path, cache: Path, options: dict) -> LanguageClient:
    client = LanguageClient("deepfim-bench", "1")

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def _create(params):
        return None

    @client.feature(types.PROGRESS)
    def _progress(params):
        return None

    await client.start_io(*command, env={**os.environ, "DEEPFIM_CACHE_DIR": str(cache)})
    caps = types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities()
        ),
    )
    await client.initialize_async(
        types.InitializeParams(
            capabilities=caps,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=options,
        )
    )
    client.initialized(types.InitializedParams())
    return client


async def wait_ready(client: LanguageClient, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await client.protocol.send_request_async("deepfim/status", {})
        if not status.loading and status.index.ready:
            return status
        await asyncio.sleep(0.1)
    raise TimeoutError("the server did not load the model and index the workspace in time")


async def replay(session: Session, keys: list[str], gaps: list[float]) -> list[dict]:
    """Type the keys; returns one record per keystroke."""
    records: list[dict] = []
    pending: tuple[str, asyncio.Future, dict] | None = None
    for key, gap in zip(keys, gaps, strict=True):
        if pending is not None and not pending[1].done():
            session.cancel(pending[0])
            pending[2]["cancelled"] = True
        sent = time.perf_counter()
        session.type_key(key)
        msg_id, future = session.request()
        record = {"key": key, "cancelled": False}
        records.append(record)

        def done(fut: asyncio.Future, record=record, sent=sent) -> None:
            record["latency_ms"] = (time.perf_counter() - sent) * 1000
            if fut.cancelled() or fut.exception() is not None:
                record["cancelled"] = True
                return
            items = fut.result().items
            record["shown"] = bool(items)
            if items:
                record["timings"] = items[0].command.arguments[0]["timings"]

        future.add_done_callback(done)
        pending = (msg_id, future, record)
        await asyncio.sleep(gap / 1000)
    if pending is not None:
        await asyncio.gather(pending[1], return_exceptions=True)
    return records


def _pct(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    p50, p95 = np.percentile(values, [50, 95])
    return float(p50), float(p95)


def summarize(records: list[dict]) -> dict:
    answered = [r for r in records if not r["cancelled"] and "latency_ms" in r]
    model = [r for r in answered if r.get("timings", {}).get("model_call")]
    summary = {
        "keystrokes": len(records),
        "answered": len(answered),
        "cancelled": sum(r["cancelled"] for r in records),
        "shown": sum(bool(r.get("shown")) for r in answered),
        "typing_through_hits": sum(bool(r.get("timings", {}).get("cached")) for r in answered),
        "joined_calls": sum(bool(r.get("timings", {}).get("joined")) for r in answered),
        "model_calls": len(model),
        "keystroke_to_response_ms": dict(zip(("p50", "p95"), _pct([r["latency_ms"] for r in answered]), strict=True)),
        "model_calls_ms": {},
    }
    for stage in ("debounce", "context", "queue", "prefill", "decode", "post", "total"):
        values = [r["timings"][f"{stage}_ms"] for r in model]
        summary["model_calls_ms"][stage] = dict(zip(("p50", "p95"), _pct(values), strict=True))
    summary["model_calls_tokens_p50"] = {
        kind: _pct([r["timings"][f"{kind}_tokens"] for r in model])[0] for kind in ("prompt", "cached", "generated")
    }
    return summary


def report(summary: dict, mode: str) -> str:
    k = summary["keystroke_to_response_ms"]
    lines = [
        f"keystrokes {summary['keystrokes']}: answered {summary['answered']}, cancelled by the next key "
        f"{summary['cancelled']}, suggestion shown {summary['shown']}, typing-through hits "
        f"{summary['typing_through_hits']}, joined a call in flight {summary['joined_calls']}, "
        f"answered by a model call {summary['model_calls']}",
        f"keystroke -> response ({mode}): p50 {k['p50']:.1f} ms  p95 {k['p95']:.1f} ms  "
        f"(goal p50 <= {GOAL_P50_MS:.0f} ms: {'met' if k['p50'] <= GOAL_P50_MS else 'NOT met'})",
        "model calls, server-side split (p50 / p95 ms):",
    ]
    for stage, v in summary["model_calls_ms"].items():
        lines.append(f"  {stage:<9} {v['p50']:8.1f} {v['p95']:8.1f}")
    tokens = summary["model_calls_tokens_p50"]
    lines.append(
        f"model calls, tokens (p50): prompt {tokens['prompt']:.0f}, served from the prefix cache "
        f"{tokens['cached']:.0f}, generated {tokens['generated']:.0f}"
    )
    return "\n".join(lines)


def random_checkpoint(out: Path) -> str:
    """A checkpoint shaped like the embedded model, with random weights."""
    import torch

    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.model.loader import save_checkpoint
    from deepfim.engine.model.tokenizer import Tokenizer
    from deepfim.engine.model.transformer import Transformer, init_weights
    from deepfim.engine.training.train import embedded_model_args

    tok = Tokenizer.from_file(DEFAULT_MODEL_DIR)
    model = Transformer(embedded_model_args(tok.vocab_size))
    init_weights(model, 0)
    with torch.no_grad():  # random weights would otherwise emit special tokens
        for token_id in tok.special_id_set:
            model.head.weight[token_id].zero_()
    save_checkpoint(model, out)
    shutil.copy(DEFAULT_MODEL_DIR / "tokenizer.json", out / "tokenizer.json")
    return str(out)


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="deepfim-bench-"))
    if args.random_weights:
        args.checkpoint = random_checkpoint(tmp / "random-checkpoint")
    root = tmp / "ws"
    shutil.copytree(args.workspace, root, ignore=shutil.ignore_patterns("__pycache__", ".git"))
    if args.test_double:
        command = [sys.executable, str(REPO / "tests" / "lsp_server" / "lsp_double_server.py")]
    else:
        command = [sys.executable, "-m", "deepfim.cli", "lsp"]
    options: dict = {"mode": "instant"}
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    if args.debounce_ms is not None:
        options["debounceMs"] = args.debounce_ms
    client = await start(command, root, tmp / "cache", options)
    try:
        started = time.perf_counter()
        status = await wait_ready(client, args.ready_timeout)
        ready_s = time.perf_counter() - started
        path = root / TRACE_FILE
        text = path.read_text(encoding="utf-8")
        offset = sum(len(line) + 1 for line in text.split("\n")[:TRACE_LINE])
        uri = path.as_uri()
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )
        session = Session(client, uri, text, offset)
        for _ in range(args.warmup):  # warm caches at the trace's starting point
            await session.request()[1]
        keys = keystrokes(TRACE) * args.repeat
        records = await replay(session, keys, gaps_ms(keys, args.median_gap_ms, args.seed))
        final = await client.protocol.send_request_async("deepfim/status", {})
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(records)
    summary.update(
        engine="test-double"
        if args.test_double
        else "random-weights"
        if args.random_weights
        else args.checkpoint or "embedded",
        models=dict(status.models._asdict()),
        ready_s=round(ready_s, 2),
        index_files=status.index.files,
        server_latency=final.latency_ms._asdict()["p50"],
    )
    print(json.dumps(summary, indent=1) if args.json else report(summary, "instant"))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=REPO / "examples" / "shop")
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the embedded model)")
    parser.add_argument("--debounce-ms", type=int, help="server-side debounce (default: the server's setting)")
    parser.add_argument("--median-gap-ms", type=float, default=140.0, help="median time between keys")
    parser.add_argument("--repeat", type=int, default=1, help="type the trace this many times")
    parser.add_argument("--warmup", type=int, default=3, help="requests before the trace")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to load and index")
    parser.add_argument("--test-double", action="store_true", help="check the harness without an engine")
    parser.add_argument(
        "--random-weights", action="store_true", help="real engine, embedded model's shape, random weights"
    )
    parser.add_argument("--json", action="store_true")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
