"""A suggestion of several lines still being written at the deadline (`showByMs`) is shown
with its complete lines; the rest follows when they are accepted. In-process against the test
double (the pipeline), then over stdio with the embedded model (the server)."""

import asyncio
import shutil
from pathlib import Path

import pytest
from lsp_double_backend import CopyBackend
from lsp_support import ENGINE, EXAMPLE, Editor, as_dict, inline_params, repository_warm, status, wait_for_status
from lsprotocol import types

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.backends import BackendSpec
from deepfim.lsp_server.backend_session import BackendSession
from deepfim.lsp_server.context_source import ContextSource
from deepfim.lsp_server.editor_settings import Settings
from deepfim.lsp_server.modes import preset_for
from deepfim.lsp_server.pipeline import CompletionInput, CompletionPipeline, complete_lines

BODY = "def area(w, h):\n    result = w * h\n    return result\n\n\ndef volume(w, h):\n"
WHOLE = "result = w * h\n    return result"  # what the double copies there, cut at the dedent


def _engines() -> BackendSession:
    return BackendSession.load(
        BackendSpec(), lambda spec: CopyBackend(DEFAULT_MODEL_DIR / "tokenizer.json", step_s=0.002)
    )


async def _complete(engines, prefix, suffix="\n", show_by_s=0.0, **settings):
    inp = CompletionInput(None, "python", prefix, suffix)
    preset = preset_for("instant", Settings(max_tokens=200, **settings))
    return await CompletionPipeline().complete(inp, preset, engines, ContextSource(None), show_by_s=show_by_s)


def test_complete_lines_are_those_before_the_last_line_break():
    assert complete_lines("a = 1\n    b") == "a = 1"
    assert complete_lines("a = 1\nb = 2\n") == "a = 1\nb = 2"
    assert complete_lines("a = 1") is None  # the line is still being written
    assert complete_lines("\n    ") is None and complete_lines("  \n") is None  # nothing on them yet


async def _shown_then_whole(engines, **kw):
    outcome = await _complete(engines, BODY + "    ", **kw)
    whole = await outcome.rest if outcome.rest is not None else None
    return outcome, whole


def test_past_the_deadline_the_complete_lines_are_shown_and_the_rest_is_written():
    engines = _engines()
    outcome, whole = asyncio.run(_shown_then_whole(engines))
    assert outcome.items == ["result = w * h"] and outcome.finish_reason == "shown_by_deadline"
    assert outcome.timings.model_call and outcome.timings.prefill_ms > 0
    assert whole is not None and whole.items == [WHOLE]  # written on after the lines were shown
    assert whole.finish_reason == "stop"


def test_without_a_deadline_or_before_it_the_whole_suggestion_is_waited_for():
    engines = _engines()
    for show_by_s in (None, 30.0):
        outcome, whole = asyncio.run(_shown_then_whole(engines, show_by_s=show_by_s))
        assert outcome.items == [WHOLE] and outcome.rest is None and whole is None


def test_lines_below_the_confidence_gate_are_not_shown_early():
    # the double's pieces stream a mean log-probability of -0.1 per token
    engines = _engines()
    outcome, whole = asyncio.run(_shown_then_whole(engines, confidence_gate=-0.05))
    # nor the whole, which the stop rule ended: its gate reads the stream's mean too
    assert outcome.rest is None and outcome.items == [] and outcome.finish_reason == "low_confidence"
    outcome, whole = asyncio.run(_shown_then_whole(engines, confidence_gate=-0.2))
    assert outcome.items == ["result = w * h"] and whole.items == [WHOLE]


def test_a_single_line_is_always_shown_whole():
    engines = _engines()
    outcome = asyncio.run(_complete(engines, "sizes = [1, 2]\nnames = [1, ", "]\n"))  # the rest of the line
    assert outcome.extent == "single" and outcome.rest is None and outcome.items == ["2"]


def test_cancelling_the_rest_stops_the_engine():
    engines = CopyBackend(DEFAULT_MODEL_DIR / "tokenizer.json", step_s=0.05)  # slow: still writing
    session = BackendSession.load(BackendSpec(), lambda spec: engines)

    async def run():
        outcome = await _complete(session, BODY + "    ")
        assert outcome.items == ["result = w * h"] and outcome.rest is not None
        outcome.rest.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outcome.rest
        for _ in range(100):  # the double notices between two steps
            if engines.stats()["cancelled"]:
                break
            await asyncio.sleep(0.02)

    asyncio.run(run())
    assert engines.stats()["cancelled"] == 1


# over stdio -------------------------------------------------------------------------------

# a body the embedded model writes several lines of, as the two above (checked below)
FIXTURE = """from shop.models import Product


def total_price(products: list[Product]) -> float:
    total = 0.0
    for product in products:
        total += product.price
    return total


def total_weight(products: list[Product]) -> float:
    total = 0.0
    for product in products:
        total += product.weight
    return total


def total_stock(products: list[Product]) -> float:
    """
LINE, CHARACTER = FIXTURE.count("\n"), 4  # the body of the last function


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """examples/shop with FIXTURE's file on disk: the repository part shows it as the editor
    has it, so every request here sends the same prompt around the cursor."""
    root = tmp_path_factory.mktemp("ws") / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "shop" / "weights.py").write_text(FIXTURE, encoding="utf-8")
    return root


def _configure(client, **settings) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"deepfim": settings}))


async def _first_item(client, uri, line, character) -> str:
    result = await client.text_document_inline_completion_async(inline_params(uri, line, character))
    assert result.items, "expected a suggestion"
    return result.items[0].insert_text


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.skipif(ENGINE != "embedded", reason="the real model's lines")
async def test_the_lines_shown_by_the_deadline_and_the_rest_make_the_whole_suggestion(client, workspace):
    await wait_for_status(client, repository_warm)  # the same prompt for every request below
    editor = Editor(client)
    path = workspace / "shop" / "weights.py"
    _configure(client, showByMs=0, maxTokens=128)  # wait for the whole
    uri = editor.open(path, FIXTURE)
    whole = await _first_item(client, uri, LINE, CHARACTER)
    assert "\n" in whole.strip(), f"the model wrote one line here: {whole!r}"
    editor.close(uri)  # forgets the typing-through cache

    before = as_dict((await status(client)).shown_by_deadline)
    _configure(client, showByMs=1)  # past the deadline by the first token
    uri = editor.open(path, FIXTURE)
    shown = await _first_item(client, uri, LINE, CHARACTER)
    assert shown != whole and whole.startswith(shown) and whole[len(shown)] == "\n"
    assert shown == complete_lines(shown + "\n")  # whole lines only

    # the user accepts the lines shown: the next request is served the rest
    editor.insert(uri, LINE, CHARACTER, shown)
    end = shown.split("\n")
    line, character = LINE + len(end) - 1, (CHARACTER if len(end) == 1 else 0) + len(end[-1])
    rest = await _first_item(client, uri, line, character)
    assert shown + rest == whole
    after = as_dict((await status(client)).shown_by_deadline)  # deepfim/status counts both
    assert (after["shown"], after["completed"], after["dropped"]) == (
        before["shown"] + 1,
        before["completed"] + 1,
        before["dropped"],
    )
    editor.close(uri)
    _configure(client, showByMs=150, maxTokens=48)
