"""End to end: `logLevel: "debug"` gives one line per completion request, saying what answered
it, the stage timings, and why nothing was shown; never the text of a document or a
suggestion. The real server over stdio, with the TEST DOUBLE backend (lsp_double_backend.py)
for a deterministic suggestion."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio
from lsp_support import Editor, inline_params, server_args, start_client, stop_client
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="module")

LOGGER = "deepfim.lsp_server.request_log"
# the double copies what followed `total = price * ` earlier in the file
TEXT = "total = price * quantity_in_basket\nother = 1\ntotal = price * "
SECRET = "API_TOKEN=hunter2-very-secret\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def logged(workspace, tmp_path_factory):
    log_file = tmp_path_factory.mktemp("log") / "deepfim.log"
    options = {"logLevel": "debug", "logFile": str(log_file), "debounceMs": 0}
    lsp = await start_client(server_args(engine="double"), workspace, options)
    yield lsp, log_file
    await stop_client(lsp)


async def _request_lines(log_file, count: int, timeout: float = 10.0) -> list[str]:
    """The request lines logged so far, once there are at least `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in log_file.read_text().splitlines() if f" {LOGGER}: " in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.02)


async def test_one_debug_line_per_request_with_the_reason_for_nothing(logged, workspace):
    client, log_file = logged
    editor = Editor(client)
    uri = editor.open(workspace / "shop" / "totals.py", TEXT)
    last = TEXT.count("\n")
    shown = await client.text_document_inline_completion_async(inline_params(uri, last, len("total = price * ")))
    assert shown.items and shown.items[0].insert_text.startswith("quantity_in_basket")
    editor.insert(uri, last, len("total = price * "), "q")  # typed the suggestion's first character
    again = await client.text_document_inline_completion_async(inline_params(uri, last, len("total = price * q")))
    assert again.items and again.items[0].insert_text == shown.items[0].insert_text[1:]
    in_word = await client.text_document_inline_completion_async(inline_params(uri, 0, 3))  # "tot|al"
    unknown = await client.text_document_inline_completion_async(inline_params(uri + ".nope", 0, 0))
    secret_uri = editor.open(workspace / ".env", SECRET, language_id="")
    secret = await client.text_document_inline_completion_async(inline_params(secret_uri, 1, 0))
    await client.protocol.send_request_async("deepfim/setEnabled", {"enabled": False})
    disabled = await client.text_document_inline_completion_async(inline_params(uri, last, len("total = price * q")))
    await client.protocol.send_request_async("deepfim/setEnabled", {"enabled": True})
    assert not (in_word.items or unknown.items or secret.items or disabled.items)

    lines = await _request_lines(log_file, 6)
    assert len(lines) == 6, "\n".join(lines)
    model, cached, word, not_open, private, off = lines
    assert f"totals.py:{last + 1}:17 inline automatic instant: shown 1 (" in model and "from the model" in model
    for stage in ("context", "prefill", "decode", "post", "total"):
        assert f" {stage} " in model, (stage, model)
    assert "tokens (" in model and "from the prefix cache" in model and "generated" in model
    assert "shown 1 (" in cached and "from the typing-through cache" in cached
    assert "totals.py:1:4" in word and "nothing shown: cursor inside a word" in word
    assert "nothing shown: document not open" in not_open
    assert ".env:2:1" in private and "nothing shown: private file" in private
    assert "nothing shown: completions disabled" in off
    log = log_file.read_text()
    assert "hunter2" not in log and "quantity_in_basket" not in log  # sizes only, never text
    editor.close(uri)
    editor.close(secret_uri)


def _set_log_level(client, level: str) -> None:
    params = types.DidChangeConfigurationParams(settings={"deepfim": {"logLevel": level}})
    client.workspace_did_change_configuration(params)


async def test_log_level_follows_the_settings_and_is_validated(logged, workspace):
    client, log_file = logged
    editor = Editor(client)
    uri = editor.open(workspace / "shop" / "quiet.py", TEXT)
    before = len(await _request_lines(log_file, 0))
    _set_log_level(client, "warning")
    await client.text_document_inline_completion_async(inline_params(uri, 0, 3))
    _set_log_level(client, "loud")
    await client.text_document_inline_completion_async(inline_params(uri, 0, 3))
    await client.protocol.send_request_async("deepfim/status", {})  # the notifications are handled by now
    assert len(await _request_lines(log_file, before + 1, timeout=0.5)) == before  # nothing logged
    warnings = [m.message for m in client.messages if "deepfim.logLevel" in m.message]
    assert warnings and "'loud'" in warnings[0] and "expected one of debug" in warnings[0]
    _set_log_level(client, "DEBUG")
    await client.text_document_inline_completion_async(inline_params(uri, 0, 3))
    assert len(await _request_lines(log_file, before + 1)) == before + 1
    editor.close(uri)
