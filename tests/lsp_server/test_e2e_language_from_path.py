"""End to end: a buffer whose client sends no usable language id (an editor without
filetype detection sends "" or "plaintext") is completed and shaped as the language its
file name says, through the real server over stdio.

The TEST DOUBLE backend (lsp_double_backend.py) makes the raw text deterministic: it copies
what followed the same text earlier in the file, here a two-line docstring body. Shaped as
Python (the cursor is inside a string) that is one line; shaped as plain text (a blank
line) it would be two.
"""

from __future__ import annotations

import pytest
import pytest_asyncio
from lsp_support import Editor, inline_params, server_args, start_client, stop_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

PREFIX = '''def first():
    """Say hello.

    Returns a greeting for the caller.
    Never raises.
    """
    return "hello"


def second():
    """Say hello.

    '''
TEXT = PREFIX + '\n    """\n    return "hi"\n'
CURSOR = (PREFIX.count("\n"), len(PREFIX.rsplit("\n", 1)[1]))
FIRST_LINE = "Returns a greeting for the caller."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def double_client(workspace):
    lsp = await start_client(server_args(engine="double"), workspace, {"debounceMs": 0})
    yield lsp
    await stop_client(lsp)


async def _complete(client, path, language_id: str) -> str:
    editor = Editor(client)
    uri = editor.open(path, TEXT, language_id=language_id)
    try:
        result = await client.text_document_inline_completion_async(inline_params(uri, *CURSOR))
    finally:
        editor.close(uri)
    assert result.items, f"no completion for languageId {language_id!r} at {path.name}"
    return result.items[0].insert_text


@pytest.mark.parametrize("language_id", ["", "plaintext", "no-such-language"])
async def test_the_file_extension_decides_when_the_language_id_does_not(double_client, workspace, language_id):
    path = workspace / "shop" / "greetings.py"
    as_python = await _complete(double_client, path, "python")
    assert as_python == FIRST_LINE  # single line: the cursor is inside a docstring
    assert await _complete(double_client, path, language_id) == as_python


async def test_a_plain_text_file_is_shaped_as_text(double_client, workspace):
    """The control: the same buffer in a .txt file has no grammar, and the same raw text is
    shown as two lines, so the test above can tell the two shapings apart."""
    shown = await _complete(double_client, workspace / "notes" / "greetings.txt", "plaintext")
    assert shown.split("\n")[0] == FIRST_LINE and "Never raises." in shown
