"""Drives `deepfim lsp` over stdio with pygls' LSP client, the way an editor does.

`start` spawns the server and initializes it (work-done progress on, so `$/progress` flows);
`Editor` holds open documents and sends edits and `textDocument/inlineCompletion` requests,
timing each from the moment it is sent; `keystrokes` and `gaps_ms` turn text into a seeded
typing trace (a newline arrives with the next line's indentation, as with auto-indent).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

REPO = Path(__file__).resolve().parents[1]
SERVER = [sys.executable, "-m", "deepfim.cli", "lsp"]


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
    """Seeded log-normal gaps between keys, longer after line ends and punctuation."""
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


def position_after(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    column_text = text[text.rfind("\n", 0, offset) + 1 : offset]
    return types.Position(line=line, character=len(column_text.encode("utf-16-le")) // 2)


def plain(value):
    """pygls answers custom requests as named tuples; this makes plain dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass
class Answer:
    sent: float  # perf_counter when the first message of the action was sent
    latency_ms: float = float("nan")
    items: int = 0
    cancelled: bool = False
    timings: dict = field(default_factory=dict)  # the server's split (only when an item was shown)


async def start(root: Path, cache: Path, options: dict, command: list[str] | None = None) -> LanguageClient:
    client = LanguageClient("deepfim-bench", "1")

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def _create(params):
        return None

    @client.feature(types.PROGRESS)
    def _progress(params):
        return None

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _message(params):
        return None

    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(cache)}
    await client.start_io(*(command or SERVER), env=env)
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


async def stop(client: LanguageClient) -> None:
    try:
        await asyncio.wait_for(client.shutdown_async(None), 60)
        client.exit(None)
    finally:
        await client.stop()


async def status(client: LanguageClient) -> dict:
    return plain(await client.protocol.send_request_async("deepfim/status", {}))


async def wait_for(client: LanguageClient, predicate, timeout_s: float, what: str, poll_s: float = 0.05) -> dict:
    """Polls `deepfim/status` until `predicate(status)`; returns that status."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = await status(client)
        if predicate(st):
            return st
        await asyncio.sleep(poll_s)
    raise TimeoutError(f"the language server did not reach '{what}' within {timeout_s:.0f} s")


def repository_warm(st: dict) -> bool:
    """Every workspace's repository part is prefilled and its files are read ahead (as a user
    who opens a file seconds after the start finds them)."""
    repos = st.get("repository") or {}
    return bool(repos) and all(
        r.get("state") == "warm" and r.get("read_ahead", 0) >= r.get("read_ahead_files", 0) for r in repos.values()
    )


class Editor:
    """Open documents of one client; every request is timed from when it is sent."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.docs: dict[str, list] = {}  # uri -> [text, version]
        self._ids = 0

    def open(self, path: Path, text: str | None = None) -> str:
        uri = path.as_uri()
        text = path.read_text(encoding="utf-8") if text is None else text
        self.docs[uri] = [text, 1]
        item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
        return uri

    def close(self, uri: str) -> None:
        self.docs.pop(uri, None)
        ident = types.TextDocumentIdentifier(uri=uri)
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=ident))

    def rest_cursor(self, uri: str, offset: int) -> None:
        """The cursor comes to rest at `offset` (`deepfim/cursor`, as the editor clients send it)."""
        here = position_after(self.docs[uri][0], offset)
        params = {"textDocument": {"uri": uri}, "position": {"line": here.line, "character": here.character}}
        self.client.protocol.notify("deepfim/cursor", params)

    def insert(self, uri: str, offset: int, key: str) -> int:
        """Types `key` at `offset`; returns the offset after it."""
        doc = self.docs[uri]
        here = position_after(doc[0], offset)
        doc[0] = doc[0][:offset] + key + doc[0][offset:]
        doc[1] += 1
        change = types.TextDocumentContentChangePartial(range=types.Range(start=here, end=here), text=key)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=doc[1]), content_changes=[change]
            )
        )
        return offset + len(key)

    def request(
        self, uri: str, offset: int, invoked: bool = False, sent: float | None = None
    ) -> tuple[str, Answer, asyncio.Future]:
        """Sends an inline completion at `offset`; the Answer fills in when it is answered."""
        self._ids += 1
        msg_id = f"b{self._ids}"
        kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position_after(self.docs[uri][0], offset),
            context=types.InlineCompletionContext(trigger_kind=kind),
        )
        answer = Answer(sent=time.perf_counter() if sent is None else sent)
        future = asyncio.wrap_future(
            self.client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        )

        def done(fut: asyncio.Future) -> None:
            answer.latency_ms = (time.perf_counter() - answer.sent) * 1000
            if fut.cancelled() or fut.exception() is not None:
                answer.cancelled = True
                return
            result = fut.result()
            items = result.items if result is not None else []
            answer.items = len(items)
            if items and items[0].command is not None:
                answer.timings = plain(items[0].command.arguments[0]).get("timings", {})

        future.add_done_callback(done)
        return msg_id, answer, future

    async def complete(self, uri: str, offset: int, invoked: bool = False, sent: float | None = None) -> Answer:
        _, answer, future = self.request(uri, offset, invoked, sent)
        await asyncio.gather(future, return_exceptions=True)
        return answer

    def cancel(self, msg_id: str) -> None:
        self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
