"""Fixtures and helpers of the serving tests (`conftest` module names collide across folders,
so conftest.py star-imports this): a ModelRunner on the tiny model, and an EngineLoop around a
scripted runner whose steps are logged, for ordering tests without a model."""

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
