"""The engine's public interface: what the language server, `deepfim complete` and the LAN
server hand to an engine, and what they get back.

A `CompletionBackend` is either the in-process engine or a client of a LAN server; callers
cannot tell them apart. Requests carry token ids (the caller packed the prompt with the
backend's tokenizer) and are answered through a `CompletionHandle`, a thin wrapper over a
`concurrent.futures.Future` that also carries cancellation down to the decode loop.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol


class Mode(enum.StrEnum):
    """Which preset serves a request: ghost text while typing, or an explicit request that may
    use a bigger budget and a bigger checkpoint. The one definition of the modes."""

    INSTANT = "instant"
    EXPERT = "expert"


class Priority(enum.IntEnum):
    """Lower value is served first: a keystroke beats an explicit request beats warm-up."""

    INSTANT = 0
    EXPERT = 1
    BACKGROUND = 2


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. Validated on construction."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    n: int = 1  # number of candidates (expert mode ranks several)
    seed: int | None = None
    speculative: bool = True  # allow MTP / n-gram drafts (greedy output is unchanged)
    # re-generate the prompt's last token under the constraint that it reproduces its text, so a
    # cursor inside a word ("normalize_|") can continue with the tokens the model knows
    # ("_path"); only the text after the prompt is returned
    token_healing: bool = True
    # stop when the last complete lines repeat one block of lines three times; keep one copy
    stop_loops: bool = True
    # stop once the candidate's mean log-probability per token can no longer reach this even if
    # every later token were certain (its log-probability sum is below floor * max_tokens):
    # an automatic suggestion under the confidence gate is not shown, so it need not be finished
    confidence_floor: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 5.0:
            raise ValueError(f"temperature must be in [0, 5], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.max_tokens <= 8192:
            raise ValueError(f"max_tokens must be in [1, 8192], got {self.max_tokens}")
        if not 1 <= self.n <= 16:
            raise ValueError(f"n must be in [1, 16], got {self.n}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop!r}")
        if self.confidence_floor is not None and not -100.0 <= self.confidence_floor <= 0.0:
            raise ValueError(f"confidence_floor must be in [-100, 0], got {self.confidence_floor}")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class NameHints:
    """What exists at the cursor, for index-aware decoding (engine/serving/identifiers.py).
    Built by the context package (context/evidence.py); empty hints constrain nothing.

    Attributes:
        receiver: the expression before the dot at the cursor ("" when there is none).
        members: what that receiver offers, when its class or module is known.
        defining: the receiver's members may legitimately grow here (``self.x =`` at the
            start of a statement: a new attribute).
        names: identifiers that exist here: the cursor file's, the workspace's definitions,
            the language's builtins (empty: bare names are not checked).
        known: receivers the completion may write and everything each offers, when that is
            known in full: ``self``/``cls`` in a class without unknown bases, imported modules
            used near the cursor; after ``name.`` only those members are written.
    """

    receiver: str = ""
    members: tuple[str, ...] = ()
    defining: bool = False
    names: frozenset[str] = frozenset()
    known: tuple[tuple[str, tuple[str, ...]], ...] = ()


_request_ids = itertools.count(1)


@dataclass
class CompletionRequest:
    """One completion: a packed prompt and how to sample it.

    `namespace` isolates cached state between users: state computed from one namespace's
    text is never reused for another (see engine/serving/prefix_cache.py).
    """

    prompt: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    priority: Priority = Priority.INSTANT
    namespace: str = "local"
    mode: Mode = Mode.INSTANT  # which checkpoint serves it (the backend routes it)
    request_id: str = field(default_factory=lambda: f"req-{next(_request_ids)}")
    hints: NameHints | None = None  # names that exist at the cursor (used where the checkpoint's profile says)
    prefill_only: bool = False  # compute and cache the prompt's state, generate nothing (background prefill)
    copy_excluded: tuple[tuple[int, int], ...] = ()  # prompt ranges copy drafts never copy from
    # positions where the state is worth keeping: the end of the part every cursor file shares, of
    # the cursor file's copy (prefill chunks end there too, so a resume is exact)
    anchors: tuple[int, ...] = ()
    persist: bool = False  # also keep the anchors' states on disk (the repository part: a restart is warm)

    @classmethod
    def prefill_ahead(
        cls, ids: list[int], anchors: tuple[int, ...], mode: Mode = Mode.INSTANT, persist: bool = False,
        priority: Priority = Priority.BACKGROUND,
    ) -> CompletionRequest:  # fmt: skip
        """Computes and caches the state after `ids` ahead of need: in the background, yielding to
        every other request, or at `priority` (the head of a prompt whose rest is being gathered)."""
        return cls(ids, SamplingParams(max_tokens=1, speculative=False), priority=priority, mode=mode,
                   prefill_only=True, anchors=anchors, persist=persist)  # fmt: skip


@dataclass
class Candidate:
    text: str
    token_ids: list[int]  # generated ids; with token healing the first re-generates the prompt's last
    finish_reason: str  # "eos" | "stop" | "length" | "cancelled" | "low_confidence" (confidence_floor)
    logprob: float = 0.0  # sum of log-probabilities of the chosen tokens


@dataclass
class Timings:
    """Milliseconds spent in each stage, measured by the engine."""

    queue_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    generated_tokens: int = 0
    draft_tokens: int = 0  # speculative tokens proposed
    accepted_draft_tokens: int = 0


@dataclass
class CompletionResult:
    candidates: list[Candidate]
    timings: Timings = field(default_factory=Timings)
    cancelled: bool = False

    @property
    def text(self) -> str:
        return self.candidates[0].text if self.candidates else ""


class CancelledError(Exception):
    """Raised by `CompletionHandle.result()` when the request was cancelled."""


class CompletionHandle:
    """Future-like handle for a submitted request. Thread-safe."""

    def __init__(self, request: CompletionRequest) -> None:
        self.request = request
        self.future: Future[CompletionResult] = Future()
        self.cancel_event = threading.Event()
        self.submitted_at = time.perf_counter()
        self.prefilled = 0  # prompt tokens whose state is computed (progress of a long prefill)
        # the engine's timings as it writes them (in-process engines; None from a team server):
        # queue, prefill and cached tokens are final once the first token is streamed
        self.live_timings: Timings | None = None

    def cancel(self) -> None:
        """Ask the engine to stop; the decode loop checks this between steps."""
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> CompletionResult:
        return self.future.result(timeout)


# Called with (candidate index, new text, mean log-probability per token of all the candidate's
# text streamed so far; None from a team server that does not send it) as tokens are produced:
# the mean lets a caller show a first part before the end under the gate the whole would face.
StreamCallback = Callable[[int, str, float | None], None]


class CompletionBackend(Protocol):
    """Anything that completes prompts: the in-process engine or a LAN-server client."""

    tokenizer_path: str  # tokenizer.json the caller must pack prompts with

    def fim_orders(self, mode: str) -> tuple[str, ...]:
        """FIM orders ("psm", "spm") the checkpoint serving `mode` was trained on."""
        ...

    def serving_profile(self, mode: str) -> dict:
        """How the checkpoint serving `mode` is prompted and decoded (`ServingProfile.as_dict`)."""
        ...

    def submit(self, request: CompletionRequest, on_text: StreamCallback | None = None) -> CompletionHandle: ...

    def stats(self) -> dict:
        """Model names, cache statistics and recent latencies, for `deepfim/status`."""
        ...

    def close(self) -> None: ...
