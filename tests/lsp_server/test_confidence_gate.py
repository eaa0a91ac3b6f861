"""The confidence gate on the embedded model: a suggestion whose mean log-probability per token
is below the checkpoint's gate is not shown, and the outcome says why; at or above it, it is.

The gate is set through the checkpoint's serving profile (as `serving.json` does), on both
sides of the score the model gives one real prompt, so the test pins the threshold's
direction and that nothing else hides the suggestion. An explicit request is never gated.
"""

from __future__ import annotations

import asyncio

import pytest

from deepfim.engine.evaluation.configs import RunConfig, make_session
from deepfim.lsp_server.context_source import ContextSource
from deepfim.lsp_server.editor_settings import Settings
from deepfim.lsp_server.modes import preset_for
from deepfim.lsp_server.pipeline import CompletionInput, CompletionPipeline

PREFIX = "def total_price(items):\n    return sum(item.price for item in items)\n\n\ndef report(items):\n    total = "
SUFFIX = "\n    print(total)\n"


def _complete(gate: float | None, invoked: bool = False, settings: Settings | None = None):
    """`gate`: the checkpoint's (its serving profile); `settings`: the editor's."""
    session = make_session(None, RunConfig("gate", overrides=(("confidence_gate", gate),)))
    pipeline = CompletionPipeline()
    try:
        inp = CompletionInput(None, "python", PREFIX, SUFFIX, invoked)
        preset = preset_for("instant", settings or Settings())
        return asyncio.run(pipeline.complete(inp, preset, session, ContextSource(None)))
    finally:
        pipeline.executor.shutdown(wait=False)
        session.close()


@pytest.fixture(scope="module")
def ungated():
    outcome = _complete(None)
    assert outcome.items and outcome.scores and outcome.reason == ""
    return outcome


def test_a_suggestion_below_the_gate_is_not_shown(ungated):
    outcome = _complete(ungated.scores[0] + 0.05)
    assert outcome.items == [] and "below the gate" in outcome.reason
    assert outcome.timings.model_call  # the model ran; the gate decided afterwards


def test_a_suggestion_at_or_above_the_gate_is_shown(ungated):
    outcome = _complete(ungated.scores[0] - 0.05)
    assert outcome.items == ungated.items and outcome.scores == pytest.approx(ungated.scores)


def test_an_explicit_request_is_not_gated(ungated):
    """The user asked (invoked): the suggestion is shown even below the gate."""
    outcome = _complete(ungated.scores[0] + 0.05, invoked=True)
    assert outcome.items == ungated.items and outcome.reason == ""


def test_the_editor_setting_overrides_the_checkpoints_gate(ungated):
    """`deepfim.confidenceGate`: false shows everything, a number replaces the checkpoint's."""
    above = ungated.scores[0] + 0.05
    assert _complete(above, settings=Settings(confidence_gate=False)).items == ungated.items
    assert _complete(None, settings=Settings(confidence_gate=above)).items == []
    assert _complete(above, settings=Settings(confidence_gate=above - 0.1)).items == ungated.items
