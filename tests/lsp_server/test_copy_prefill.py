"""End to end: a file the repository part does not show has its copy prefilled when it opens
(lsp_server/copy_prefill.py): its first suggestion resumes after the copy; one asked for
before that goes without the copy instead of prefilling it."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from lsp_support import (
    Editor,
    as_dict,
    complete_timings,
    engine_counts,
    repository_warm,
    server_args,
    start_client,
    stop_client,
    wait_for_status,
)
from lsp_support import status as server_status

from deepfim.lsp_server.copy_prefill import MAX_PENDING

pytestmark = pytest.mark.asyncio(loop_scope="module")

# a file made after the scan (so no repository part shows it), too long for the cursor window
BODY = "".join(f"def rate_{i}(amount, factor={i}):\n    return amount * factor + {i * 13 % 97}\n\n" for i in range(60))
CURSOR_LINE = 90  # inside the body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lsp(workspace):
    client = await start_client(server_args(), workspace, {"maxTokens": 8})
    yield client
    await stop_client(client)


def _copies(status) -> dict:
    return as_dict(status.copies)


async def _copy_end(client, uri: str) -> int:
    """Where the prompt's copy of the cursor file ends once the engine holds it (`deepfim/prompt`
    shows the copy only then; asking for a copy not held has it prefilled, as a request does:
    the warmer may renew the part under it while a test runs)."""
    params = {"textDocument": {"uri": uri}, "position": {"line": CURSOR_LINE, "character": 0}}
    for _ in range(20):
        prompt = as_dict(await client.protocol.send_request_async("deepfim/prompt", params))
        ends = [as_dict(s)["end"] for s in prompt["segments"] if as_dict(s)["kind"] == "cursor_copy"]
        if ends:
            return ends[0]
        await asyncio.sleep(0.1)
        await wait_for_status(client, lambda s: _copies(s)["running"] == 0)
    raise AssertionError("the test file must need a copy, and the engine must come to hold it")


async def _complete(client, uri: str, line: int = CURSOR_LINE) -> dict:
    return await complete_timings(client, uri, line, 0)


async def test_once_warm_the_files_evidence_reads_are_read_ahead(lsp, workspace):
    """The warmer prepares what a newly opened file's evidence reads (the files' texts and their
    similar-code index, `Workspace.read_ahead`): here every indexed file, the workspace is small."""

    def read_ahead(s) -> bool:
        part = as_dict(next(iter(as_dict(s.repository).values()))) if repository_warm(s) else {}
        return part.get("read_ahead", 0) == part.get("read_ahead_files") >= as_dict(s.index)["files"] > 0

    await wait_for_status(lsp, read_ahead)


async def test_an_opened_files_copy_is_prefilled_before_its_first_request(lsp, workspace):
    status = await wait_for_status(lsp, repository_warm)
    before = _copies(status)["prefilled"]
    editor = Editor(lsp)
    uri = editor.open(workspace / "rates.py", BODY)
    status = await wait_for_status(lsp, lambda s: _copies(s)["prefilled"] > before and _copies(s)["running"] == 0)
    requests = engine_counts(status)["requests"]
    end = await _copy_end(lsp, uri)
    timings = as_dict(await _complete(lsp, uri))
    # the first request found the copy in the prefix cache: it prefilled its window only
    assert timings["cached_tokens"] >= end
    assert engine_counts(await server_status(lsp))["requests"] == requests + 1  # no prefill was started again


async def test_a_request_before_the_copy_is_held_goes_without_it(lsp, workspace):
    status = await wait_for_status(lsp, repository_warm)
    before = _copies(status)
    editor = Editor(lsp)
    uri = editor.open(workspace / "fees.py", BODY.replace("rate_", "fee_"))
    first = as_dict(await _complete(lsp, uri))  # at once: the copy is not prefilled yet
    assert _copies(await server_status(lsp))["left_out"] > before["left_out"]
    await wait_for_status(lsp, lambda s: _copies(s)["prefilled"] > before["prefilled"] and _copies(s)["running"] == 0)
    end = await _copy_end(lsp, uri)  # held now: the prompt shows it
    # the first prompt was the part and the window: shorter than the part and the copy alone
    assert (
        first["prompt_tokens"] < end
        and first["cached_tokens"] >= as_dict(next(iter(as_dict(status.repository).values())))["tokens"] - 1
    )
    second = as_dict(await _complete(lsp, uri, CURSOR_LINE + 40))
    assert second["cached_tokens"] >= end > first["prompt_tokens"]


async def test_secret_and_closed_files_are_never_prefilled(lsp, workspace):
    await wait_for_status(lsp, repository_warm)
    before = _copies(await server_status(lsp))
    editor = Editor(lsp)
    editor.open(workspace / ".env.production", "API_TOKEN=" + "x" * 40 + "\n" + BODY, language_id="dotenv")
    uri = editor.open(workspace / "closed.py", BODY.replace("rate_", "gone_"))
    editor.close(uri)
    await asyncio.sleep(0.6)  # past the open delay of both
    after = _copies(await wait_for_status(lsp, lambda s: _copies(s)["running"] == 0))
    assert after["prefilled"] == before["prefilled"]


async def test_a_burst_of_opens_prefills_only_the_last_ones(lsp, workspace):
    """An editor restoring a session: the files opened last wait for their prefill; an older one
    is prefilled when a request in it finds its copy missing. (Before any test that edits: an
    edit renews the part after a pause, and the new part may show these open buffers.)"""
    await wait_for_status(lsp, repository_warm)
    before = _copies(await server_status(lsp))
    editor = Editor(lsp)
    uris = [editor.open(workspace / f"tab_{i}.py", BODY.replace("rate_", f"tab{i}_")) for i in range(MAX_PENDING + 2)]
    done = lambda s: _copies(s)["prefilled"] >= before["prefilled"] + MAX_PENDING and _copies(s)["running"] == 0  # noqa: E731
    assert _copies(await wait_for_status(lsp, done))["prefilled"] == before["prefilled"] + MAX_PENDING
    first = as_dict(await _complete(lsp, uris[0]))  # not prefilled: goes without its copy, and asks for it
    assert first["prompt_tokens"] < await _copy_end(lsp, uris[0])


async def test_the_prefill_waits_for_the_user_to_pause(lsp, workspace):
    await wait_for_status(lsp, repository_warm)
    before = _copies(await server_status(lsp))
    editor = Editor(lsp)
    typed = editor.open(workspace / "notes.py", "x = 1\n")
    uri = editor.open(workspace / "levies.py", BODY.replace("rate_", "levy_"))
    for i in range(20):  # a key every 50 ms for a second: never a pause of IDLE_S
        editor.insert(typed, 1, i % 5, "y")
        await asyncio.sleep(0.05)
        assert _copies(await server_status(lsp))["prefilled"] == before["prefilled"]
    await wait_for_status(lsp, lambda s: _copies(s)["prefilled"] > before["prefilled"] and _copies(s)["running"] == 0)
    end = await _copy_end(lsp, uri)
    assert as_dict(await _complete(lsp, uri))["cached_tokens"] >= end
