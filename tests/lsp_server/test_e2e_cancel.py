"""End to end: cancellation and latest-wins reach the engine's decode loop."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from lsp_support import (
    Editor,
    engine_counts,
    inline_params,
    repository_warm,
    server_args,
    start_client,
    stop_client,
    utf16_len,
    wait_for_status,
)
from lsp_support import status as server_status
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

pytestmark = pytest.mark.asyncio(loop_scope="module")

STEP_MS = 30  # per generated token of the double: a long decode takes seconds
# nothing in the workspace follows 'ΩЖ, so the double decodes until max_tokens; "fast"
# appeared before, so a completion after it ends within a few tokens
TEXT = 'label = "fast path"\nx = "ΩЖ'
# The embedded model closes that string within a token or two, so on it a request lasts
# only while its prompt is new: FILLER makes an invoked (expert, 16K-token) prompt whose
# prefill takes seconds, long enough for the cancellation to land between its chunks.
FILLER = "".join(
    f"def step_{i}(value_{i}, scale={i}):\n    return value_{i} * scale + {i * 7 % 101}\n" for i in range(900)
)
FILLER_LINES = FILLER.count("\n")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slow_client(workspace):
    options = {"maxTokens": 256, "contextBudget": -5}  # expert: 4x maxTokens; -5 is invalid (reported)
    lsp = await start_client(server_args(step_ms=STEP_MS), workspace, options)
    yield lsp
    await stop_client(lsp)


def _counts(status) -> tuple[int, int]:
    """(active, cancelled) requests of the backend."""
    counts = engine_counts(status)
    return counts["active"], counts["cancelled"]


def _decoding(status) -> bool:
    return _counts(status)[0] == 1


def _repository_idle(status) -> bool:
    """The repository part is prefilled: its background request (counted as an active one) is
    over, not merely yet to start (the index may still be scanning)."""
    return not status.loading and status.index.ready and repository_warm(status)


async def test_invalid_initialization_options_are_reported(slow_client):
    await wait_for_status(slow_client, lambda s: not s.loading)
    messages = [m.message for m in slow_client.messages if "deepfim.contextBudget" in m.message]
    assert messages and "-5" in messages[0]


async def test_cancelled_request_ends_without_result_and_stops_decoding(slow_client, workspace):
    editor = Editor(slow_client)
    idle = await wait_for_status(slow_client, _repository_idle)  # the warmer's request would count as ours
    submitted = engine_counts(idle)["requests"]
    uri = editor.open(workspace / "cancel.py", FILLER + TEXT)
    line = FILLER_LINES + 1
    params = inline_params(uri, line, utf16_len('x = "ΩЖ'), invoked=True)
    request = asyncio.ensure_future(
        slow_client.protocol.send_request_async("textDocument/inlineCompletion", params, msg_id="slow-1")
    )
    # ours is in the engine (submitted, running): the cancellation must reach its prefill
    before = await wait_for_status(
        slow_client, lambda s: engine_counts(s)["requests"] > submitted and _counts(s)[0] >= 1
    )
    slow_client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow-1"))
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(request, 10)
    # the request stops within a prefill chunk or a decode step (how soon: bench/bench_lsp_responsiveness.py)
    after = await wait_for_status(slow_client, lambda s: _counts(s)[0] == 0)
    assert _counts(after)[1] == _counts(before)[1] + 1
    # the server keeps serving: a short completion right after
    editor.insert(uri, line, utf16_len('x = "ΩЖ'), '"\ny = "fast')
    result = await asyncio.wait_for(
        slow_client.text_document_inline_completion_async(inline_params(uri, line + 1, utf16_len('y = "fast'))), 30
    )
    assert result.items and result.items[0].insert_text.strip()
    editor.close(uri)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def double_client(workspace):
    """The real server over the scripted engine double, for tests that need a decode to last:
    the double takes STEP_MS per token and counts the pieces it has streamed."""
    options = {"maxTokens": 256, "contextBudget": -5}
    lsp = await start_client(server_args(step_ms=STEP_MS, engine="double"), workspace, options)
    yield lsp
    await stop_client(lsp)


async def test_newer_request_supersedes_the_running_one(double_client, workspace):
    """On the double: the real model may finish the first request before the keystroke lands."""
    client = double_client
    editor = Editor(client)
    uri = editor.open(workspace / "supersede.py", TEXT)
    first = asyncio.ensure_future(
        client.text_document_inline_completion_async(inline_params(uri, 1, utf16_len('x = "ΩЖ'), invoked=True))
    )
    before = await wait_for_status(client, _decoding)
    editor.insert(uri, 1, utf16_len('x = "ΩЖ'), '"\ny = "fast')
    second = client.text_document_inline_completion_async(inline_params(uri, 2, utf16_len('y = "fast')))
    superseded, latest = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert list(superseded.items) == []
    assert latest.items and latest.items[0].range.start == types.Position(line=2, character=len('y = "fast'))
    assert latest.items[0].insert_text == ' path"'
    assert _counts(await server_status(client))[1] == _counts(before)[1] + 1
    editor.close(uri)


async def test_typing_what_the_model_is_streaming_joins_its_call(double_client, workspace):
    client = double_client
    text = "label = product.name_and_price_label\nother = product."
    editor = Editor(client)
    uri = editor.open(workspace / "join.py", text)
    await client.text_document_inline_completion_async(inline_params(uri, 0, len("label = prod")))
    before = (await wait_for_status(client, lambda s: hasattr(s.engine, "requests"))).engine  # started
    first = asyncio.ensure_future(
        client.text_document_inline_completion_async(inline_params(uri, 1, len("other = product.")))
    )
    await wait_for_status(client, lambda s: s.engine.streamed_pieces >= before.streamed_pieces + 2)
    editor.insert(uri, 1, len("other = product."), "n")  # the first character the model streamed
    second = client.text_document_inline_completion_async(inline_params(uri, 1, len("other = product.n")))
    whole, rest = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert whole.items[0].insert_text == "name_and_price_label"
    assert rest.items[0].insert_text == "ame_and_price_label"
    timings = rest.items[0].command.arguments[0]["timings"]
    assert timings["joined"] is True and timings["model_call"] is False
    after = (await server_status(client)).engine
    assert after.requests == before.requests + 1 and after.cancelled == before.cancelled  # one call, kept
    editor.close(uri)
