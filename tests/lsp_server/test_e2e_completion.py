"""End to end: the real server process over stdio, driven by a real LSP client."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsp_support import ENGINE, Editor, engine_counts, inline_params, send_raw_request, utf16_len
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

pytestmark = pytest.mark.asyncio(loop_scope="module")

# "na" is typed after an emoji and CJK text on the cursor line; the same call appears
# earlier in the file, which is what the test double copies from.
FIXTURE = """from shop.models import Product


def label(product: Product) -> str:
    return "😀 漢字 " + product.name


def short_label(product: Product) -> str:
    return "😀 漢字 " + product.na
"""
CURSOR_LINE = 8


async def test_initialize_advertises_features(client):
    caps = client.initialize_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert "deepfim.accept" in caps.execute_command_provider.commands
    assert caps.workspace.workspace_folders.supported and caps.workspace.workspace_folders.change_notifications


async def test_model_loading_reports_progress(client):
    status = await client.protocol.send_request_async("deepfim/status", {})
    deadline = time.monotonic() + 20
    while (status.loading or not status.index.ready) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status = await client.protocol.send_request_async("deepfim/status", {})
    titles = [
        report.title
        for reports in client.progress_reports.values()
        for report in reports
        if isinstance(report, types.WorkDoneProgressBegin)
    ]
    assert any("loading model" in title for title in titles)
    ends = [
        r for reports in client.progress_reports.values() for r in reports if isinstance(r, types.WorkDoneProgressEnd)
    ]
    assert any(e.message == "model ready" for e in ends)
    if status.index.files:  # the workspace index is installed: indexing reported its progress too
        assert any("indexing shop" in title for title in titles)
        assert any(e.message.endswith("files indexed") for e in ends)


async def test_inline_completion_is_positioned_in_utf16(client, workspace):
    editor = Editor(client)
    uri = editor.open(workspace / "shop" / "labels.py", FIXTURE)
    line = FIXTURE.split("\n")[CURSOR_LINE]
    character = utf16_len(line)  # the emoji counts two UTF-16 units
    assert character == len(line) + 1
    result = await client.text_document_inline_completion_async(inline_params(uri, CURSOR_LINE, character))
    assert result.items, "expected a suggestion"
    item = result.items[0]
    assert item.insert_text.strip()
    here = types.Position(line=CURSOR_LINE, character=character)
    assert item.range == types.Range(start=here, end=here)
    assert item.command.command == "deepfim.accept"
    timings = item.command.arguments[0]["timings"]
    assert timings["model_call"] and timings["total_ms"] > 0
    if ENGINE == "double":
        assert item.insert_text == "me"  # copied from `product.name` above
    editor.close(uri)


async def test_typing_through_serves_the_rest_without_the_model(client, workspace):
    editor = Editor(client)
    text = FIXTURE.replace("product.na\n", "product.\n")
    uri = editor.open(workspace / "shop" / "typing.py", text)
    line = text.split("\n")[CURSOR_LINE]
    first = await client.text_document_inline_completion_async(inline_params(uri, CURSOR_LINE, utf16_len(line)))
    suggestion = first.items[0].insert_text
    assert len(suggestion) >= 2
    before = await client.protocol.send_request_async("deepfim/status", {})
    editor.insert(uri, CURSOR_LINE, utf16_len(line), suggestion[0])
    second = await client.text_document_inline_completion_async(
        inline_params(uri, CURSOR_LINE, utf16_len(line) + utf16_len(suggestion[0]))
    )
    after = await client.protocol.send_request_async("deepfim/status", {})
    assert second.items[0].insert_text == suggestion[1:]
    assert second.items[0].command.arguments[0]["id"] == first.items[0].command.arguments[0]["id"]
    assert second.items[0].command.arguments[0]["timings"]["cached"] is True
    assert after.cache.hits == before.cache.hits + 1
    assert engine_counts(before)["requests"] >= 1  # the first suggestion came from the model...
    assert engine_counts(after) == engine_counts(before)  # ...the rest of it without a model call
    editor.close(uri)


async def test_completion_fallback_carries_the_same_text(client, workspace):
    editor = Editor(client)
    uri = editor.open(workspace / "shop" / "fallback.py", FIXTURE)
    line = FIXTURE.split("\n")[CURSOR_LINE]
    here = types.Position(line=CURSOR_LINE, character=utf16_len(line))
    inline = await client.text_document_inline_completion_async(inline_params(uri, CURSOR_LINE, here.character))
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=here)
    )
    assert len(result.items) == 1
    item = result.items[0]
    assert item.text_edit.range == types.Range(start=here, end=here)
    assert item.text_edit.new_text.strip() and item.data["id"]
    # the same suggestion as inline completion shows for this cursor, character for character
    assert item.text_edit.new_text == inline.items[0].insert_text
    editor.close(uri)


async def test_custom_methods_and_acceptance_statistics(client, workspace):
    assert (await client.protocol.send_request_async("deepfim/setMode", {"mode": "expert"})).mode == "expert"
    assert (await client.protocol.send_request_async("deepfim/status", {})).mode == "expert"
    await client.protocol.send_request_async("deepfim/setMode", {"mode": "instant"})
    with pytest.raises(JsonRpcInvalidParams):
        await client.protocol.send_request_async("deepfim/setMode", {"mode": "turbo"})

    editor = Editor(client)
    uri = editor.open(workspace / "shop" / "accept.py", FIXTURE)
    line = FIXTURE.split("\n")[CURSOR_LINE]
    result = await client.text_document_inline_completion_async(inline_params(uri, CURSOR_LINE, utf16_len(line)))
    before = (await client.protocol.send_request_async("deepfim/status", {})).acceptance
    await client.protocol.send_request_async("deepfim/accept", {"id": result.items[0].command.arguments[0]["id"]})
    status = await client.protocol.send_request_async("deepfim/status", {})
    assert status.acceptance.accepted == before.accepted + 1
    assert status.latency_ms.count >= 1 and status.latency_ms.p50 > 0
    assert status.models.instant and status.server == "in-process" and status.index.ready in (True, False)
    with pytest.raises(JsonRpcInvalidParams):
        await client.protocol.send_request_async("deepfim/accept", {"acceptedChars": 3})
    # clients that run item commands on the server count acceptances the same way
    editor.insert(uri, CURSOR_LINE, 0, "\n")
    again = await client.text_document_inline_completion_async(inline_params(uri, CURSOR_LINE + 1, utf16_len(line)))
    command = again.items[0].command
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command.command, arguments=command.arguments)
    )
    final = await client.protocol.send_request_async("deepfim/status", {})
    assert final.acceptance.accepted == status.acceptance.accepted + 1
    editor.close(uri)


async def test_malformed_params_get_an_error_and_the_server_keeps_serving(client):
    bad = {"textDocument": {"uri": "file:///x.py"}, "position": {"line": "three"}, "context": {"triggerKind": 1}}
    with pytest.raises(JsonRpcInvalidParams, match=r"textDocument/inlineCompletion.*position\.line"):
        await asyncio.wait_for(send_raw_request(client, "bad-1", "textDocument/inlineCompletion", bad), 10)
    status = await client.protocol.send_request_async("deepfim/status", {})
    assert status.mode in ("instant", "expert")


async def test_unknown_uri_gets_an_empty_answer(client, workspace):
    missing = (workspace / "never_opened.py").as_uri()
    result = await client.text_document_inline_completion_async(inline_params(missing, 0, 0))
    assert list(result.items) == []
    editor = Editor(client)
    editor.insert(missing, 0, 0, "x")  # a change to an unknown document is ignored, not fatal
    assert (await client.protocol.send_request_async("deepfim/status", {})).enabled is True


async def test_five_megabyte_document_gets_no_completions_and_slows_nothing_else(client, workspace):
    """A buffer over the indexer's file-size limit (generated code, a dump) is held but never
    completed: the server says so once and keeps answering everywhere else."""
    editor = Editor(client)
    filler = "".join(f"value_{i} = compute({i}, 'ünïcode 😀')\n" for i in range(120_000))
    text = filler + FIXTURE
    assert len(text.encode()) > 5_000_000
    uri = editor.open(workspace / "shop" / "big.py", text)
    first_line = filler.count("\n")
    editor.insert(uri, first_line + CURSOR_LINE, 0, "    ")  # an incremental edit deep in the file
    line = "    " + FIXTURE.split("\n")[CURSOR_LINE]
    result = await client.text_document_inline_completion_async(
        inline_params(uri, first_line + CURSOR_LINE, utf16_len(line))
    )
    assert result is None or not result.items
    deadline = time.monotonic() + 10
    while not any("big.py" in m.message and "limit" in m.message for m in client.messages):
        assert time.monotonic() < deadline, "the size limit was never reported"
        await asyncio.sleep(0.05)
    small = editor.open(workspace / "shop" / "small.py", FIXTURE)
    editor.insert(small, CURSOR_LINE, 0, "    ")  # the same edit in a normal file
    result = await client.text_document_inline_completion_async(inline_params(small, CURSOR_LINE, utf16_len(line)))
    assert result.items, "a normal file next to the big one still gets suggestions"
    editor.close(uri)
    editor.close(small)


async def test_invalid_configuration_is_reported_and_defaults_are_used(client):
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"deepfim": {"maxTokens": "many", "debounceMs": 5}})
    )
    deadline = time.monotonic() + 10
    while not any("deepfim.maxTokens" in m.message for m in client.messages) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    message = next(m for m in client.messages if "deepfim.maxTokens" in m.message)
    assert message.type == types.MessageType.Warning and "'many'" in message.message


async def test_workspace_folders_can_be_added_and_removed(client, tmp_path):
    before = await client.protocol.send_request_async("deepfim/status", {})
    extra = tmp_path / "extra"
    (extra / "pkg").mkdir(parents=True)
    (extra / "pkg" / "util.py").write_text("def helper(x):\n    return x * 2\n")
    folder = types.WorkspaceFolder(uri=extra.as_uri(), name="extra")

    def change(added, removed):
        client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(event=types.WorkspaceFoldersChangeEvent(added=added, removed=removed))
        )

    change([folder], [])
    if before.index.files:  # with the workspace index installed, the new folder gets indexed
        deadline = time.monotonic() + 20
        status = before
        while status.index.files <= before.index.files and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            status = await client.protocol.send_request_async("deepfim/status", {})
        assert status.index.files == before.index.files + 1 and status.index.ready
    change([], [folder])
    after = await client.protocol.send_request_async("deepfim/status", {})
    assert after.index.files == before.index.files
