"""The engine loop: one thread that repeatedly schedules, runs and finishes requests.

`submit` may be called from any thread; results arrive through each request's
`CompletionHandle` future. Cancellation is checked before every step, so a cancelled request
stops within one decode step (or one prefill chunk) and its prefilled state stays cached.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Protocol

from deepfim.engine.api import CompletionHandle, CompletionRequest, CompletionResult, StreamCallback
from deepfim.engine.scheduler import Scheduler
from deepfim.engine.sequence import ActiveRequest
from deepfim.engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class Runner(Protocol):
    tokenizer: Tokenizer

    def advance(self, req: ActiveRequest) -> None: ...


class RequestRejected(ValueError):
    """A request the engine cannot run (empty, too long, bad token ids); says why."""


class LLMEngine:
    def __init__(self, runner: Runner, max_prompt_tokens: int, vocab_size: int, name: str = "engine") -> None:
        self.runner = runner
        self.scheduler = Scheduler()
        self.max_prompt_tokens = max_prompt_tokens
        self.vocab_size = vocab_size
        self.name = name
        self._inbox: deque[ActiveRequest] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"deepfim-{name}", daemon=True)
        self.latencies_ms: deque[float] = deque(maxlen=512)
        self.completed = self.cancelled = self.failed = 0
        self._thread.start()

    def submit(self, request: CompletionRequest, on_text: StreamCallback | None = None) -> CompletionHandle:
        self._validate(request)
        handle = CompletionHandle(request)
        req = ActiveRequest(request, handle, on_text, self.runner.tokenizer)
        with self._wake:
            if self._closed:
                raise RuntimeError(f"engine {self.name} is closed")
            self._inbox.append(req)
            self._wake.notify()
        return handle

    def _validate(self, request: CompletionRequest) -> None:
        n = len(request.prompt)
        if n == 0:
            raise RequestRejected("empty prompt")
        if n + request.sampling.max_tokens > self.max_prompt_tokens:
            raise RequestRejected(
                f"prompt of {n} tokens + max_tokens {request.sampling.max_tokens} exceeds {self.max_prompt_tokens}"
            )
        bad = [t for t in request.prompt if not 0 <= t < self.vocab_size]
        if bad:
            raise RequestRejected(f"token ids outside the vocabulary (size {self.vocab_size}): {bad[:5]}")

    def step(self) -> bool:
        """Runs one unit of work; False when there was nothing to do."""
        req = self.scheduler.next()
        if req is None:
            return False
        if req.handle.cancelled:
            self._finish(req, cancelled=True)
            return True
        try:
            self.runner.advance(req)
        except Exception as exc:  # one bad request must not take the engine down
            log.exception("engine %s: request %s failed", self.name, req.request.request_id)
            self._finish(req, cancelled=False, error=exc)
            return True
        if req.done:
            self._finish(req, cancelled=req.handle.cancelled)
        return True

    def _finish(self, req: ActiveRequest, cancelled: bool, error: BaseException | None = None) -> None:
        self.scheduler.remove(req)
        req.state = None
        for cand in req.candidates:
            cand.state = None  # free the sequence's private state (cached snapshots stay)
        if error is not None:
            self.failed += 1
            if not req.handle.future.done():
                req.handle.future.set_exception(error)
            return
        if cancelled:
            self.cancelled += 1
        else:
            self.completed += 1
            self.latencies_ms.append((time.perf_counter() - req.handle.submitted_at) * 1e3)
        if not req.handle.future.done():
            req.handle.future.set_result(CompletionResult(req.results(), req.timings, cancelled))

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._inbox and not len(self.scheduler) and not self._closed:
                    self._wake.wait()
                if self._closed:
                    break
                while self._inbox:
                    self.scheduler.add(self._inbox.popleft())
            self.step()
        for req in [*self.scheduler.items(), *self._inbox]:
            self._finish(req, cancelled=True)

    def close(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout)

    def stats(self) -> dict:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

        return {
            "active": len(self.scheduler),
            "completed": self.completed,
            "cancelled": self.cancelled,
            "failed": self.failed,
            "latency_ms": {"count": len(lat), "p50": pct(0.5), "p95": pct(0.95)},
        }
