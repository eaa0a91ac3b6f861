"""TEST DOUBLE of `CompletionBackend` for the team-server tests (not an engine).

`PrefixCacheEchoBackend` behaves like an engine where the server can observe it:
- one decode thread steps every active request one token per `token_delay_s`, streaming
  text through `on_text` and stopping between steps when `cancel_event` is set;
- it keeps per-namespace state the way a prefix cache does: `cached_tokens` is the longest
  prefix shared with an earlier prompt *of the same namespace*, and generation first tries
  to *recall* a continuation from that namespace's earlier prompts (prompt-lookup style: the
  tokens before the cursor are looked up, and what followed them is generated).
  If the server let namespaces mix, one user's text would come back in another's completion;
  with isolation, an unmatched prompt gets a deterministic echo of its own length and sum.

The real `deepfim.engine.serving.local_backend.LocalBackend` can replace it (see conftest.BACKEND).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from deepfim.engine.api import (
    CancelledError,
    Candidate,
    CompletionHandle,
    CompletionRequest,
    CompletionResult,
    Timings,
)
from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer

RECALL_KEY_TOKENS = 8


@dataclass
class _Active:
    handle: CompletionHandle
    on_text: object
    plan: list[int]
    decoders: list[StreamDecoder]
    timings: Timings
    emitted: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    fail: Exception | None = None


class PrefixCacheEchoBackend:
    """Deterministic, namespace-aware, streaming, cancellable. Thread-safe."""

    def __init__(self, tokenizer_path: str, token_delay_s: float = 0.002, modes=("instant", "expert")) -> None:
        self.tokenizer_path = str(tokenizer_path)
        self.tok = Tokenizer.from_file(tokenizer_path)
        self.token_delay_s = token_delay_s
        self.modes = tuple(modes)
        self.history: dict[str, list[list[int]]] = {}  # namespace → prompts seen (the "cache")
        self.submitted: list[CompletionRequest] = []
        self.cancelled_ids: set[str] = set()
        self.finished_ids: list[str] = []
        self.max_concurrent = 0
        self.refuse_next: Exception | None = None  # raised by the next submit() (engine refuses)
        self.fail_next: Exception | None = None  # the next request fails mid-decode (e.g. out of memory)
        self._active: list[_Active] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="echo-backend", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ CompletionBackend

    def fim_orders(self, mode: str) -> tuple[str, ...]:
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} not served")
        return ("psm",)

    def serving_profile(self, mode: str) -> dict:
        return {"prompt_layout": "files", "fim_order": self.fim_orders(mode)[0]}

    def submit(self, request: CompletionRequest, on_text=None) -> CompletionHandle:
        handle = CompletionHandle(request)
        with self._cv:
            if self.refuse_next is not None:
                exc, self.refuse_next = self.refuse_next, None
                raise exc
            seen = self.history.setdefault(request.namespace, [])
            cached = max((_common_prefix(p, request.prompt) for p in seen), default=0)
            plan = self._recall(seen, request.prompt) or self._echo(request.prompt, request.sampling.max_tokens)
            plan = plan[: request.sampling.max_tokens]
            seen.append(list(request.prompt))
            n = request.sampling.n
            timings = Timings(prompt_tokens=len(request.prompt), cached_tokens=cached)
            active = _Active(handle, on_text, plan, [StreamDecoder(self.tok) for _ in range(n)], timings)
            active.texts = [""] * n
            active.fail, self.fail_next = self.fail_next, None
            self.submitted.append(request)
            self._active.append(active)
            self.max_concurrent = max(self.max_concurrent, len(self._active))
            self._cv.notify()
        return handle

    def stats(self) -> dict:
        with self._cv:
            return {"models": {m: "echo-double" for m in self.modes}, "active": len(self._active)}

    def healthy(self) -> bool:
        return not self._closed

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(5)

    @property
    def active(self) -> int:
        with self._cv:
            return len(self._active)

    # ------------------------------------------------------------ generation

    def _recall(self, seen: list[list[int]], prompt: list[int]) -> list[int]:
        hole = self.tok.special.fim_hole
        cursor = prompt.index(hole) if hole in prompt else len(prompt)  # PSM: the prefix ends at the hole
        key = prompt[max(0, cursor - RECALL_KEY_TOKENS) : cursor]
        if len(key) < RECALL_KEY_TOKENS:
            return []
        for earlier in reversed(seen):
            for start in range(len(earlier) - len(key) - 1, -1, -1):
                if earlier[start : start + len(key)] == key:
                    follow = earlier[start + len(key) :]
                    return [t for t in follow if t not in self.tok.special_id_set]
        return []

    def _echo(self, prompt: list[int], max_tokens: int) -> list[int]:
        unit = self.tok.encode(f"echo:{len(prompt)}:{sum(prompt) % 10007};")
        return unit * (max_tokens // len(unit) + 1)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._active and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                batch = list(self._active)
            for active in batch:  # one decode step for each active request, outside the lock
                self._step(active)
            time.sleep(self.token_delay_s)

    def _step(self, a: _Active) -> None:
        req = a.handle.request
        if a.handle.cancel_event.is_set():
            self._retire(a)
            self.cancelled_ids.add(req.request_id)
            a.handle.future.set_exception(CancelledError(f"{req.request_id} cancelled"))
            return
        if a.fail is not None and a.emitted:
            self._retire(a)
            a.handle.future.set_exception(a.fail)
            return
        finish = None
        if len(a.emitted) < len(a.plan):
            token = a.plan[len(a.emitted)]
            a.emitted.append(token)
            for i, dec in enumerate(a.decoders):
                delta = dec.push(token)
                a.texts[i] += delta
                if delta and a.on_text is not None:
                    a.on_text(i, delta, 0.0)  # no log-probabilities here: every token certain
            if any(s in a.texts[0] for s in req.sampling.stop):
                finish = "stop"
            elif len(a.emitted) >= req.sampling.max_tokens:
                finish = "length"
        else:
            finish = "eos"
        if finish is None:
            return
        self._retire(a)
        a.timings.generated_tokens = len(a.emitted)
        a.timings.decode_ms = (time.perf_counter() - a.started) * 1000.0
        cands = [Candidate(text, list(a.emitted), finish) for text in a.texts]
        self.finished_ids.append(req.request_id)
        a.handle.future.set_result(CompletionResult(cands, a.timings))

    def _retire(self, a: _Active) -> None:
        with self._cv:
            self._active.remove(a)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
