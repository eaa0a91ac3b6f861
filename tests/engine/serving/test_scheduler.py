"""The engine loop and scheduler against a scripted runner: ordering, preemption, cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from deepfim.engine.api import CompletionRequest, Priority, SamplingParams
from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer
from deepfim.engine.serving.engine_loop import EngineLoop, RequestRejected
from deepfim.engine.serving.sequence import ActiveRequest, CandidateState


class ScriptedRunner:
    """Each request needs `len(prompt) // 100` prefill steps and `max_tokens` decode steps."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.log: list[tuple[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.delay = 0.0
        self.after_step = lambda req: None  # runs in the engine thread after each logged step

    def advance(self, req: ActiveRequest) -> None:
        self.gate.wait(5)
        time.sleep(self.delay)
        if "boom" in req.request.request_id:
            raise RuntimeError("kaboom")
        if req.prefilling:
            req.prefilled += 100
            self.log.append((req.request.request_id, "prefill"))
            if req.prefilled >= len(req.request.prompt):
                req.candidates.append(CandidateState(0, StreamDecoder(self.tokenizer), None))
        else:
            cand = req.candidates[0]
            cand.tokens.append(65)
            self.log.append((req.request.request_id, "decode"))
            if len(cand.tokens) >= req.request.sampling.max_tokens:
                cand.finish_reason = "length"
        self.after_step(req)


@pytest.fixture
def engine(tiny_checkpoint):
    runner = ScriptedRunner(Tokenizer.from_file(tiny_checkpoint))
    eng = EngineLoop(lambda: runner, max_prompt_tokens=100_000, vocab_size=8192)
    eng.wait_ready()
    yield eng
    eng.close()


def req(rid, n_prompt, priority=Priority.INSTANT, user="u", max_tokens=2):
    return CompletionRequest([5] * n_prompt, SamplingParams(max_tokens=max_tokens), priority, user, request_id=rid)


def test_keystroke_preempts_a_long_background_prefill_within_one_chunk(engine):
    runner = engine.runner
    keys = []

    def submit_key_during_third_chunk(_active):
        # submitted while a background chunk runs: exactly that chunk may finish first
        if len(runner.log) == 3 and not keys:
            keys.append(engine.submit(req("key", 100, Priority.INSTANT)))

    runner.after_step = submit_key_during_third_chunk
    bg = engine.submit(req("bg", 2000, Priority.BACKGROUND))
    bg.result(10)
    keys[0].result(5)
    order = [rid for rid, _ in runner.log]
    # the keystroke's prefill and both decode steps ran before the next background chunk
    assert order[:6] == ["bg"] * 3 + ["key"] * 3
    assert order.count("bg") == 20 + 2


def test_priority_then_round_robin_across_users(engine):
    runner = engine.runner
    runner.gate.clear()
    handles = [
        engine.submit(req("alice-1", 100, user="alice", max_tokens=3)),
        engine.submit(req("alice-2", 100, user="alice", max_tokens=3)),
        engine.submit(req("bob-1", 100, user="bob", max_tokens=3)),
        engine.submit(req("expert", 100, Priority.EXPERT, user="carol", max_tokens=1)),
    ]
    runner.gate.set()
    for h in handles:
        h.result(5)
    order = [rid for rid, _ in runner.log]
    assert order.index("expert") > max(i for i, r in enumerate(order) if r != "expert" and r != "alice-2")
    # bob is served between alice's steps instead of waiting for both alice requests
    assert order.index("bob-1") < order.index("alice-2")
    assert order[:4] == ["alice-1", "bob-1", "alice-1", "bob-1"]


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
