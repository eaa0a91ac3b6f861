"""The engine loop (engine/serving/engine_loop.py) against a scripted runner: cancellation,
failures that stay with their request, rejected requests."""

from __future__ import annotations

import pytest
from serving_support import req

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.serving.engine_loop import RequestRejected


def test_cancel_ends_without_result_text_and_frees_the_request(engine):
    runner = engine.runner
    runner.delay = 0.002  # a decode step takes a little while, as a real one does
    long = engine.submit(req("long", 100, max_tokens=1000))
    while not runner.log:
        pass
    long.cancel()
    result = long.result(5)
    assert result.cancelled
    assert len(engine.scheduler) == 0
    assert engine.stats()["cancelled"] == 1
    assert sum(1 for rid, _ in runner.log if rid == "long") < 1000


def test_a_failing_request_fails_alone(engine):
    bad = engine.submit(req("boom", 100))
    good = engine.submit(req("fine", 100))
    with pytest.raises(RuntimeError, match="kaboom"):
        bad.result(5)
    assert good.result(5).candidates[0].finish_reason == "length"


def test_invalid_requests_are_rejected_with_reasons(engine):
    with pytest.raises(RequestRejected, match="empty prompt"):
        engine.submit(CompletionRequest([]))
    with pytest.raises(RequestRejected, match="outside the vocabulary"):
        engine.submit(CompletionRequest([1, 99999]))
    with pytest.raises(RequestRejected, match="exceeds"):
        engine.submit(CompletionRequest([1] * 100_000, SamplingParams(max_tokens=10)))
