"""Two language-server figures the end-to-end tests check only as behaviour.

* 5 MB document: a Python file of 120,000 filler lines (non-ASCII text on each) and a cursor
  near the end; time from an automatic `textDocument/inlineCompletion` to its answer, the
  first one after `didOpen` and then each after an incremental edit deep in the file;
* cancellation: an invoked (expert) completion at the end of a 2,000-line file that no earlier
  request saw (a cold prefill of seconds: the trained model's decode itself ends within a few
  tokens), timed once uncancelled, then cancelled (`$/cancelRequest`) as soon as the engine
  runs it; time until the engine reports no active request.
Prints the median and max over `--repeats` runs, and the server's own split of the 5 MB
requests (context, prefill, decode ms) from the item's command arguments.

    .venv/bin/python bench/bench_lsp_responsiveness.py [--repeats 5] [--checkpoint DIR]
    .venv/bin/python bench/bench_lsp_responsiveness.py --test-double   # harness check only
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types

from deepfim.bench.lsp_client import REPO, start, wait_for

sys.path.insert(0, str(REPO / "tests" / "lsp_server"))
from lsp_support import engine_counts, inline_params, utf16_len  # noqa: E402


async def wait_ready(client, timeout_s: float) -> dict:
    return await wait_for(client, lambda st: not st["loading"] and st["index"]["ready"], timeout_s, "model and index")


FILLER = "".join(f"value_{i} = compute({i}, 'ünïcode 😀')\n" for i in range(120_000))
CURSOR_TEXT = 'def short_label(product):\n    return "😀 漢字 " + product.na'
CANCEL_TEXT = 'label = "fast path"\nx = "ΩЖ'  # the cursor in an unfinished string (as in test_e2e_cancel.py)


class Document:
    def __init__(self, client, path: Path, text: str) -> None:
        self.client, self.uri, self.version = client, path.as_uri(), 1
        item = types.TextDocumentItem(uri=self.uri, language_id="python", version=1, text=text)
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))

    def insert(self, line: int, character: int, text: str) -> None:
        self.version += 1
        here = types.Position(line=line, character=character)
        change = types.TextDocumentContentChangePartial(range=types.Range(start=here, end=here), text=text)
        doc = types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(text_document=doc, content_changes=[change])
        )


async def status(client):
    return await client.protocol.send_request_async("deepfim/status", {})


async def large_document(client, root: Path, args) -> tuple[list[float], list[dict]]:
    await wait_ready(client, args.ready_timeout)
    doc = Document(client, root / "shop" / "big.py", FILLER + CURSOR_TEXT + "\n")
    line, indent = FILLER.count("\n") + 1, ""
    latencies, splits = [], []
    for i in range(args.repeats + 1):
        if i:  # an incremental edit at the start of the cursor line, 120,000 lines down
            doc.insert(line, 0, "    ")
            indent += "    "
        t0 = time.perf_counter()
        result = await client.text_document_inline_completion_async(
            inline_params(doc.uri, line, utf16_len(indent + CURSOR_TEXT.split("\n")[1]))
        )
        latencies.append(time.perf_counter() - t0)
        print(f"5 MB request {i}: {latencies[-1] * 1e3:.1f} ms", file=sys.stderr, flush=True)
        if result.items:
            splits.append(result.items[0].command.arguments[0]["timings"])
    return latencies, splits


def cancel_document(variant: int) -> str:
    """2,000 lines before the cursor, each different per variant: every request prefills cold."""
    lines = "".join(f"value_{k} = compute({k}, {variant})\n" for k in range(2000))
    return lines + CANCEL_TEXT


async def cancellation(client, root: Path, args) -> tuple[float, list[float]]:
    """(seconds the completion takes uncancelled, seconds from each cancel to an idle engine)."""
    await wait_ready(client, args.ready_timeout)
    uncancelled, stopped = 0.0, []
    for i in range(args.repeats + 1):
        doc = Document(client, root / f"cancel_{i}.py", cancel_document(i))
        params = inline_params(doc.uri, 2000 + 1, utf16_len('x = "ΩЖ'), invoked=True)
        if i == 0:
            t0 = time.perf_counter()
            await client.text_document_inline_completion_async(params)
            uncancelled = time.perf_counter() - t0
            continue
        msg_id = f"cancel-{i}"
        future = asyncio.wrap_future(
            client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        )
        while engine_counts(await status(client))["active"] == 0 and not future.done():
            await asyncio.sleep(0.005)
        if future.done():
            raise RuntimeError("the completion ended before it could be cancelled: nothing to measure")
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        t0 = time.perf_counter()
        while engine_counts(await status(client))["active"] != 0:
            await asyncio.sleep(0.005)
        stopped.append(time.perf_counter() - t0)
        print(f"cancel {i}: {stopped[-1] * 1e3:.1f} ms", file=sys.stderr, flush=True)
        await asyncio.gather(future, return_exceptions=True)
    return uncancelled, stopped


def row(name: str, values: list[float]) -> str:
    median, worst = statistics.median(values) * 1e3, max(values) * 1e3
    return f"{name:<36} median {median:9.1f} ms  max {worst:9.1f} ms  (n={len(values)})"


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="deepfim-bench-"))
    root = tmp / "shop"
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns("__pycache__", ".git"))
    options: dict = {"maxTokens": 256, **({"checkpoint": args.checkpoint} if args.checkpoint else {})}
    if args.test_double:
        command = [sys.executable, str(REPO / "tests" / "lsp_server" / "lsp_double_server.py"), "--step-ms=30"]
    else:
        command = [sys.executable, "-m", "deepfim.cli", "lsp"]
    client = await start(root, tmp / "cache", options, command)
    try:
        big, splits = await large_document(client, root, args)
        uncancelled, stops = await cancellation(client, root, args)
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"engine: {'test double' if args.test_double else args.checkpoint or 'embedded'}")
    print(row("5 MB document, first request", big[:1]))
    print(row("5 MB document, after an edit", big[1:]))
    for stage in ("context", "prefill", "decode", "total"):
        values = [s[f"{stage}_ms"] for s in splits if f"{stage}_ms" in s]
        if values:
            print(f"  server {stage:<8} median {statistics.median(values):9.1f} ms")
    print(row("long completion, uncancelled", [uncancelled]))
    print(row("cancel -> engine idle", stops))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the embedded model)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to load and index")
    parser.add_argument("--test-double", action="store_true", help="check the harness without an engine")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
