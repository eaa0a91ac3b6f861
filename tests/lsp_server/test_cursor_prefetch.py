"""End to end: where the cursor comes to rest (`deepfim/cursor`), the server prefills the
prompt of an automatic request there, and of one after an Enter there, while the user pauses
(lsp_server/cursor_prefetch.py); the first key then resumes from the prefix cache."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from lsp_support import (
    Editor,
    as_dict,
    complete_timings,
    repository_warm,
    server_args,
    start_client,
    stop_client,
    wait_for_status,
)
from lsp_support import status as server_status

from deepfim.lsp_server.cursor_prefetch import after_enter

IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

BODY = "".join(
    f"def levy_{i}(amount, factor={i}):\n    total = amount * factor\n    return total + {i}\n\n" for i in range(40)
)
LINE = 61  # "    total = amount * factor" of levy_15: the cursor rests at its end


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lsp(workspace):
    client = await start_client(server_args(), workspace, {"maxTokens": 8})
    yield client
    await stop_client(client)


def _cursor(status) -> dict:
    return as_dict(status.cursor)


def _rest(client, uri: str, line: int, character: int) -> None:
    client.protocol.notify(
        "deepfim/cursor", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
    )


async def _opened_and_rested(lsp, workspace, name: str) -> tuple[Editor, str, int]:
    await wait_for_status(lsp, repository_warm)
    before = _cursor(await server_status(lsp))["prefetched"]
    editor = Editor(lsp)
    uri = editor.open(workspace / name, BODY.replace("levy_", f"{name[:-3]}_"))
    end = len(BODY.split("\n")[LINE])
    _rest(lsp, uri, LINE, end)
    await wait_for_status(lsp, lambda s: _cursor(s)["prefetched"] >= before + 2)  # as is, then after an Enter
    return editor, uri, end


@IN_MODULE_LOOP
async def test_the_first_key_where_the_cursor_rested_resumes_at_the_prompts_end(lsp, workspace):
    editor, uri, end = await _opened_and_rested(lsp, workspace, "tolls.py")
    editor.insert(uri, LINE, end, " ")
    timings = await complete_timings(lsp, uri, LINE, end + 1)
    assert timings["prompt_tokens"] - timings["cached_tokens"] <= 16  # not the window's ~400 tokens


@IN_MODULE_LOOP
async def test_an_enter_where_the_cursor_rested_resumes_near_the_prompts_end(lsp, workspace):
    editor, uri, end = await _opened_and_rested(lsp, workspace, "duties.py")
    editor.insert(uri, LINE, end, "\n    ")
    timings = await complete_timings(lsp, uri, LINE + 1, 4)
    # the suffix, the far prefix and most evidence came from the prefetch; evidence drawn from
    # the file itself may differ at the end (the prefetch saw the buffer before the Enter)
    assert timings["prompt_tokens"] - timings["cached_tokens"] <= 64


@IN_MODULE_LOOP
async def test_the_window_where_the_cursor_rests_comes_before_the_files_copy(lsp, workspace):
    """A newly opened file's copy (~1 s of prefill for a big file on a small CPU) waits while the
    windows an automatic request sends now are prefetched: a key after a short pause hits them."""
    await wait_for_status(lsp, lambda s: repository_warm(s) and as_dict(s.copies)["running"] == 0)
    copies_before = as_dict((await server_status(lsp)).copies)["prefilled"]
    editor, uri, end = await _opened_and_rested(lsp, workspace, "tariffs.py")
    assert as_dict((await server_status(lsp)).copies)["prefilled"] == copies_before  # deferred
    editor.insert(uri, LINE, end, " ")
    timings = await complete_timings(lsp, uri, LINE, end + 1)  # sent without the copy, not held yet
    assert timings["prompt_tokens"] - timings["cached_tokens"] <= 16
    await wait_for_status(lsp, lambda s: as_dict(s.copies)["prefilled"] > copies_before)  # then the copy


@IN_MODULE_LOOP
async def test_without_a_rest_the_window_is_prefilled_by_the_request(lsp, workspace):
    """The control: the same file and key with no `deepfim/cursor` prefill the whole window."""
    await wait_for_status(lsp, repository_warm)
    editor = Editor(lsp)
    uri = editor.open(workspace / "excises.py", BODY.replace("levy_", "excises_"))
    end = len(BODY.split("\n")[LINE])
    editor.insert(uri, LINE, end, " ")
    timings = await complete_timings(lsp, uri, LINE, end + 1)
    assert timings["prompt_tokens"] - timings["cached_tokens"] > 100


@IN_MODULE_LOOP
async def test_a_position_whose_buffer_changed_is_not_prefetched(lsp, workspace):
    await wait_for_status(lsp, repository_warm)
    before = _cursor(await server_status(lsp))
    editor = Editor(lsp)
    uri = editor.open(workspace / "tariffs.py", BODY.replace("levy_", "tariffs_"))
    _rest(lsp, uri, LINE, 4)
    editor.insert(uri, LINE, 4, "x")  # typed before the pause: that key's own request covers it
    after = _cursor(await wait_for_status(lsp, lambda s: _cursor(s)["moot"] > before["moot"]))
    await asyncio.sleep(0.5)
    assert _cursor(await server_status(lsp))["prefetched"] == after["prefetched"] == before["prefetched"]


@IN_MODULE_LOOP
async def test_a_bad_cursor_notification_is_dropped_and_the_server_answers(lsp, workspace):
    lsp.protocol.notify("deepfim/cursor", {"textDocument": "nope", "position": {"line": "x"}})
    _rest(lsp, (workspace / "never-opened.py").as_uri(), 3, 0)
    assert _cursor(await server_status(lsp))["reported"] >= 1


def test_after_enter_indents_as_editors_do():
    assert after_enter("    x = 1", "\n    y = 2\n") == "    x = 1\n    "
    assert after_enter("def f():", "\n") == "def f():\n    "
    assert after_enter("\tif a {", "") == "\tif a {\n\t\t"
    assert after_enter("    x = f(", "a)\n") is None  # not at the end of its line


@IN_MODULE_LOOP
async def test_a_new_files_first_prompt_resumes_after_its_head_sent_ahead(lsp, workspace):
    """Enter at once in a newly opened file: nothing was prefetched, but the prompt's head (its
    header, suffix and far prefix) went to the engine before the evidence was gathered
    (pipeline.py `_head_sender`), and the whole prompt resumed at its end, not at the end of
    the repository part."""
    await wait_for_status(lsp, repository_warm)
    parts = as_dict((await server_status(lsp)).repository)
    [part_tokens] = [as_dict(p)["tokens"] for p in parts.values()]
    editor = Editor(lsp)
    uri = editor.open(workspace / "excise.py", BODY.replace("levy_", "excise_"))
    end = len(BODY.split("\n")[LINE])
    editor.insert(uri, LINE, end, "\n    ")
    timings = await complete_timings(lsp, uri, LINE + 1, 4)
    assert timings["cached_tokens"] > part_tokens + 64  # the suffix and the far prefix came cached
    assert timings["prompt_tokens"] > timings["cached_tokens"]  # the evidence and near prefix did not
