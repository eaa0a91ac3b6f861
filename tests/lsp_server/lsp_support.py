"""Fixtures for the language-server tests: a real server subprocess driven over stdio by
pytest-lsp's client, on a copy of the bundled example workspace."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLE = REPO / "examples" / "shop"

# Which engine the end-to-end tests run against. "double": the CopyBackend test double
# (lsp_double_backend.py); "embedded": the real server and engine with the embedded model
# (or with CHECKPOINT, a checkpoint directory, when set).
ENGINE = "embedded"
CHECKPOINT: str | None = None


def server_args(step_ms: float = 2.0, load_ms: float = 0.0, engine: str | None = None) -> list[str]:
    """Command line that starts the server under test (`engine` overrides ENGINE);
    `step_ms`/`load_ms` slow the double."""
    if (engine or ENGINE) == "embedded":
        return [sys.executable, "-m", "deepfim.cli", "lsp"]
    return [sys.executable, str(HERE / "lsp_double_server.py"), f"--step-ms={step_ms}", f"--load-ms={load_ms}"]


def engine_options() -> dict:
    # the tests check what the model writes, so the checkpoint's confidence gate is off unless a
    # test sets it (the gate's own tests: test_confidence_gate.py)
    options: dict = {"confidenceGate": False}
    return {**options, "checkpoint": CHECKPOINT} if ENGINE == "embedded" and CHECKPOINT else options


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A private copy of examples/shop (the server may write index caches next to it)."""
    root = tmp_path_factory.mktemp("ws") / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(workspace_folders=True, configuration=False),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities(),
            completion=types.CompletionClientCapabilities(
                completion_item=types.ClientCompletionItemOptions(snippet_support=False)
            ),
        ),
    )


async def start_client(
    args: list[str], root: Path, options: dict | None = None, client: LanguageClient | None = None
) -> LanguageClient:
    client = client or make_test_lsp_client()
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(root.parent / "cache")}
    await client.start_io(*args, env=env)
    client.initialize_result = await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities(),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options={**engine_options(), **(options or {})},
        )
    )
    return client


async def stop_client(client: LanguageClient) -> None:
    await client.shutdown_session()
    await client.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(workspace):
    """One server for a whole test module (starting one costs about a second)."""
    lsp = await start_client(server_args(load_ms=300), workspace)
    yield lsp
    await stop_client(lsp)


class Editor:
    """Opens documents and edits them the way an editor does (incremental didChange)."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.versions: dict[str, int] = {}

    def open(self, path: Path, text: str | None = None, language_id: str = "python") -> str:
        uri = path.as_uri()
        self.versions[uri] = 1
        item = types.TextDocumentItem(
            uri=uri, language_id=language_id, version=1, text=path.read_text() if text is None else text
        )
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
        return uri

    def insert(self, uri: str, line: int, character: int, text: str) -> None:
        self.versions[uri] = self.versions.get(uri, 1) + 1
        here = types.Position(line=line, character=character)
        change = types.TextDocumentContentChangePartial(range=types.Range(start=here, end=here), text=text)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[change],
            )
        )

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )


def inline_params(uri: str, line: int, character: int, invoked: bool = False) -> types.InlineCompletionParams:
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


def send_raw_request(client: LanguageClient, msg_id: str, method: str, params) -> asyncio.Future:
    """A request with arbitrary (possibly malformed) JSON params, which the typed client API
    cannot send; the response arrives through the client's normal machinery."""
    future: Future = Future()
    client.protocol._request_futures[msg_id] = future
    client.protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
    return asyncio.wrap_future(future)


async def status(client: LanguageClient):
    return await client.protocol.send_request_async("deepfim/status", {})


async def wait_for_status(client: LanguageClient, predicate, timeout: float = 120.0):
    """The first `deepfim/status` answer that satisfies `predicate` (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = await status(client)
        if predicate(answer):
            return answer
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def as_dict(node):
    """A JSON object of a response as a dict (pygls hands them over as named tuples)."""
    return node._asdict() if hasattr(node, "_asdict") else node


def engine_counts(status) -> dict:
    """The backend's request counters in a `deepfim/status` answer, wherever its statistics keep
    them (the double: at the top of `engine`; the real engine: per checkpoint), summed over
    checkpoints: `active`, `completed`, `cancelled`, `failed` and `requests` (submitted, in any
    state). All zero until the backend is loaded."""
    totals = dict.fromkeys(("active", "completed", "cancelled", "failed", "requests"), 0)

    def visit(node) -> None:
        node = as_dict(node)
        if not isinstance(node, dict):
            return
        if "active" in node and "cancelled" in node:
            counts = {key: int(node.get(key) or 0) for key in ("active", "completed", "cancelled", "failed")}
            counts["requests"] = int(node["requests"]) if "requests" in node else sum(counts.values())
            for key, value in counts.items():
                totals[key] += value
            return
        for value in node.values():
            visit(value)

    visit(status.engine)
    return totals


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def repository_warm(status) -> bool:
    """Every workspace's repository part is prefilled (`deepfim/status` repository state)."""
    parts = as_dict(status.repository) or {}
    return bool(parts) and all(as_dict(p).get("state") == "warm" for p in parts.values())


async def complete_timings(client: LanguageClient, uri: str, line: int, character: int) -> dict:
    """An automatic completion at (line, character): the stage timings of its first item (the
    model must answer something there)."""
    result = await client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, line, character)
    )
    assert result is not None and result.items, "the model must answer something here"
    return as_dict(as_dict(result.items[0].command.arguments[0])["timings"])
