"""The engine loop and scheduler against a scripted runner: batching, ordering, preemption,
cancellation. Each engine step is one batch; the runner logs the batch members of every step."""

from __future__ import annotations

import threading
import time

import pytest

from deepfim.engine.api import CompletionRequest, Priority, SamplingParams
from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer
from deepfim.engine.serving.engine_loop import EngineLoop, RequestRejected
from deepfim.engine.serving.sequence import ActiveRequest, CandidateState


class ScriptedRunner:
    """Each request needs `len(prompt) // 100` prefill chunks of 100 tokens and `max_tokens` decode steps."""

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


def test_keystroke_preempts_a_long_background_prefill_within_one_chunk(engine):
    runner = engine.runner
    runner.hold_at = 3  # the engine stops before its 4th step, a background chunk already chosen
    bg = engine.submit(req("bg", 2000, Priority.BACKGROUND))
    assert runner.held.wait(5)
    key = engine.submit(req("key", 100, Priority.INSTANT, user="typist"))
    runner.gate.set()
    key.result(5)
    bg.result(10)
    # the keystroke's prefill ran in the first step chosen after it arrived, and alone: the
    # prefill budget (one chunk) went to it, not to the background prompt
    first_key = next(i for i, ids in enumerate(runner.steps) if "key" in ids)
    assert first_key == 4 and runner.steps[first_key] == ["key"]
    # its decode steps then ran beside the background prefill, not after it
    assert runner.steps[first_key + 1] == ["key", "bg"] and runner.steps[first_key + 2] == ["key", "bg"]
    assert [rid for rid, _ in runner.log].count("bg") == 20 + 2


def test_all_running_sequences_decode_in_one_step(engine):
    runner = engine.runner
    runner.gate.clear()
    handles = [engine.submit(req(f"u{i}", 100, user=f"user{i}", max_tokens=8)) for i in range(4)]
    runner.gate.set()
    for h in handles:
        h.result(5)
    # one prompt chunk per step (the budget), each beside the decode steps of those already running
    assert [sorted(ids) for ids in runner.steps[:4]] == [
        ["u0"],
        ["u0", "u1"],
        ["u0", "u1", "u2"],
        ["u0", "u1", "u2", "u3"],
    ]
    assert len([ids for ids in runner.steps if len(ids) == 4]) == 6  # from u3's prefill to u0's last token
    assert max(len(ids) for ids in runner.steps) == 4


def test_prefill_budget_goes_by_priority_then_round_robin_across_users(engine):
    runner = engine.runner
    runner.gate.clear()
    handles = [
        engine.submit(req("alice-1", 300, user="alice", max_tokens=1)),
        engine.submit(req("alice-2", 100, user="alice", max_tokens=1)),
        engine.submit(req("bob-1", 300, user="bob", max_tokens=1)),
        engine.submit(req("expert", 100, Priority.EXPERT, user="carol", max_tokens=1)),
    ]
    runner.gate.set()
    for h in handles:
        h.result(5)
    prefills = [rid for rid, kind in runner.log if kind == "prefill"]
    # one 100-token chunk per step (the budget): alice and bob alternate, alice's second request
    # waits for her first, the expert request waits for every instant prompt
    assert prefills[:6] == ["alice-1", "bob-1", "alice-1", "bob-1", "alice-1", "bob-1"]
    assert prefills.index("alice-2") < prefills.index("expert") == len(prefills) - 1


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
