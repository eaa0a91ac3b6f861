"""Fixtures and helpers of the serving tests (`conftest` module names collide across folders,
so conftest.py star-imports this): a ModelRunner on the tiny model, and an EngineLoop around a
scripted runner whose batched steps are logged, for ordering tests without a model."""

from __future__ import annotations

import threading
import time

import pytest

from deepfim.engine.api import CompletionRequest, Priority, SamplingParams
from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer
from deepfim.engine.serving.engine_loop import EngineLoop
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.sequence import ActiveRequest, CandidateState
from deepfim.engine.serving.speculative import SpeculativeConfig

__all__ = ["PROMPT", "ScriptedRunner", "engine", "req", "runner"]


@pytest.fixture(scope="module")
def runner(tiny_model, tiny_checkpoint):
    return ModelRunner(tiny_model, Tokenizer.from_file(tiny_checkpoint), None, SpeculativeConfig(enabled=False))


PROMPT = list(range(40, 140))


class ScriptedRunner:
    """Each request needs `len(prompt) // 100` prefill chunks of 100 tokens and `max_tokens` decode
    steps; every step of the engine is one call of `step`, whose batch members are logged."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.log: list[tuple[str, str]] = []  # (request id, "prefill" | "decode") in step order
        self.steps: list[list[str]] = []  # the request ids of each step
        self.gate = threading.Event()
        self.gate.set()
        self.delay = 0.0
        self.hold_at: int | None = None  # the step before which the runner closes its gate itself
        self.held = threading.Event()

    def prefill_cost(self, req: ActiveRequest) -> int:
        return 100 if req.prefilling else 0

    def step(self, batch: list[ActiveRequest]) -> dict[int, Exception]:
        if len(self.steps) == self.hold_at:
            self.gate.clear()
            self.held.set()
        self.gate.wait(5)
        time.sleep(self.delay)
        self.steps.append([r.request.request_id for r in batch])
        failed = {}
        for req in batch:
            if "boom" in req.request.request_id:
                failed[req.seq_no] = RuntimeError("kaboom")
            elif req.prefilling:
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
        return failed


@pytest.fixture
def engine(tiny_checkpoint):
    runner = ScriptedRunner(Tokenizer.from_file(tiny_checkpoint))
    eng = EngineLoop(lambda: runner, max_prompt_tokens=100_000, vocab_size=8192)
    eng.wait_ready()
    yield eng
    eng.close()


def req(rid, n_prompt, priority=Priority.INSTANT, user="u", max_tokens=2):
    return CompletionRequest([5] * n_prompt, SamplingParams(max_tokens=max_tokens), priority, user, request_id=rid)
