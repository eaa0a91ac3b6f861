"""The completion pipeline in-process against the test double: stop rules end the decode
early, cancelling the awaiting task cancels the engine handle, expert mode ranks several."""

import asyncio

import pytest
from lsp_double_backend import CopyBackend

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.backends import BackendSpec
from deepfim.lsp_server.backend_session import BackendSession
from deepfim.lsp_server.context_source import ContextSource
from deepfim.lsp_server.editor_settings import Settings
from deepfim.lsp_server.modes import preset_for
from deepfim.lsp_server.pipeline import CompletionInput, CompletionPipeline

BODY = "def area(w, h):\n    result = w * h\n    return result\n\n\ndef volume(w, h):\n"


def _engines(step_s: float) -> BackendSession:
    return BackendSession.load(
        BackendSpec(), lambda spec: CopyBackend(DEFAULT_MODEL_DIR / "tokenizer.json", step_s=step_s)
    )


def _complete(engines, prefix, suffix, mode="instant", settings=None):
    settings = settings or Settings()
    pipeline = CompletionPipeline()
    inp = CompletionInput(None, "python", prefix, suffix)
    return asyncio.run(pipeline.complete(inp, preset_for(mode, settings), engines, ContextSource(None)))


def test_multi_line_completion_stops_at_the_end_of_the_block():
    engines = _engines(step_s=0.001)
    # the double copies `result = w * h\n    return result\n\n\ndef volume...`: the
    # stop rule ends it at the dedent and stops the decode there
    outcome = _complete(engines, BODY + "    ", "\n", settings=Settings(max_tokens=200))
    assert outcome.items == ["result = w * h\n    return result"]
    assert outcome.finish_reason == "stop" and outcome.extent == "multi"
    stats = engines.backend.stats()
    assert stats["cancelled"] == 1  # stopped early by the stop rule, not run to max_tokens
    assert stats["generated_tokens"] < 40
    assert outcome.timings.prefill_ms > 0 and outcome.timings.decode_ms > 0


def test_cursor_inside_a_word_makes_no_model_call():
    engines = _engines(step_s=0.001)
    outcome = _complete(engines, "x = comp", "ute()\n")
    assert outcome.items == [] and outcome.extent == "none" and not outcome.timings.model_call
    assert engines.backend.stats()["requests"] == 0


def test_expert_mode_returns_ranked_distinct_candidates():
    engines = _engines(step_s=0.001)
    prefix = "a = compute(1)\nb = compute(2)\nc = compute(3)\nd = compute("
    outcome = _complete(engines, prefix, "\n", mode="expert")
    assert 1 < len(outcome.items) <= 3 and len(set(outcome.items)) == len(outcome.items)
    assert outcome.items[0] == "3)"  # the likeliest candidate first (copy of the latest line)


def test_cancelling_the_task_cancels_the_engine_decode():
    engines = _engines(step_s=0.05)
    backend = engines.backend

    async def run():
        pipeline = CompletionPipeline()
        inp = CompletionInput(None, "python", 'x = "ΩЖ', "\n")  # no match: decodes to max_tokens
        task = asyncio.ensure_future(
            pipeline.complete(inp, preset_for("instant", Settings(max_tokens=500)), engines, ContextSource(None))
        )
        while backend.stats()["active"] == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if backend.stats()["active"] == 0:
                break
            await asyncio.sleep(0.01)

    asyncio.run(run())
    stats = backend.stats()
    assert stats["active"] == 0 and stats["cancelled"] == 1 and stats["generated_tokens"] < 50
