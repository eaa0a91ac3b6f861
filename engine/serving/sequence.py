"""Per-request bookkeeping inside the engine: prompt progress, candidates, text, timings."""

from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass, field

import torch

from deepfim.engine.api import Candidate, CompletionHandle, CompletionRequest, StreamCallback, Timings
from deepfim.engine.model.state import ModelState
from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer
from deepfim.engine.serving.prefix_cache import PromptKeys
from deepfim.engine.serving.sampler import StopChecker
from deepfim.engine.serving.speculative import CopyDrafter, NgramDrafter

_seq_numbers = itertools.count()


NGRAM_KEPT_PRIOR = 0.75  # a candidate's first n-gram draft is tried (code repeats itself)
NGRAM_KEPT_RECOVERY = 0.1  # per step without a draft, its record fades back toward the prior


@dataclass
class CandidateState:
    """One of a request's n continuations."""

    index: int
    decoder: StreamDecoder
    generator: torch.Generator | None
    state: ModelState | None = None
    tokens: list[int] = field(default_factory=list)
    token_ends: list[int] = field(default_factory=list)  # len(text) after each token
    next_token: int | None = None  # sampled, not yet fed to the model
    logprob: float = 0.0
    logprob_sums: list[float] = field(default_factory=list)  # `logprob` after each token
    raw_text: str = ""  # everything decoded, including the healed prompt text
    text: str = ""  # decoded after the prompt (stop strings not yet cut)
    cut: int | None = None  # where a stop string or a loop begins: the text returned ends there
    streamed: int = 0  # characters already passed to the stream callback
    finish_reason: str | None = None
    drafter: NgramDrafter | None = None  # speculative drafts from the context (greedy only)
    copier: CopyDrafter | None = None  # copies of what the context holds (accepted by likelihood)
    mtp_draft: int | None = None  # the MTP block's guess for the token after next_token
    ngram_kept: float = NGRAM_KEPT_PRIOR  # recent share of its n-gram draft tokens the model kept

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def tokens_before(self, end: int) -> int:
        """How many tokens wrote the text before `end`: those that start before it (the last
        may run past it)."""
        return min(len(self.tokens), bisect.bisect_left(self.token_ends, end) + 1) if end > 0 else 0

    def logprob_of(self, tokens: int) -> float:
        """The log-probability of the first `tokens` tokens."""
        return self.logprob_sums[tokens - 1] if tokens else 0.0


@dataclass
class ActiveRequest:
    request: CompletionRequest
    handle: CompletionHandle
    on_text: StreamCallback | None
    tokenizer: Tokenizer
    seq_no: int = field(default_factory=lambda: next(_seq_numbers))
    state: ModelState | None = None  # prompt state while prefilling
    prefilled: int = 0  # prompt tokens in `state`
    started: bool = False  # prefix cache consulted
    cache_keys: PromptKeys | None = None  # the prompt's prefix-cache keys, hashed once at the start
    prefill_done: bool = False  # a prefill-only request has cached its whole prompt
    last_logits: torch.Tensor | None = None
    candidates: list[CandidateState] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    first_step_at: float | None = None
    stop: StopChecker = field(init=False)
    prompt_ids: list[int] = field(init=False)  # the prompt fed to the model (last token healed away)
    heal: str = field(init=False)  # text the first generated tokens must reproduce
    guide: object | None = None  # index-aware decoding's check (model_runner builds it)
    line_context: str = ""  # the prompt's text on the cursor's line (index-aware decoding reads it)

    def __post_init__(self) -> None:
        self.stop = StopChecker(self.request.sampling.stop)
        self.timings.prompt_tokens = len(self.request.prompt)
        self.handle.live_timings = self.timings
        prompt, self.heal = self.request.prompt, ""
        healing = self.request.sampling.token_healing and not self.request.prefill_only
        if healing and len(prompt) > 1 and prompt[-1] not in self.tokenizer.special_id_set:
            self.heal = self.tokenizer.decode([prompt[-1]])
            if self.heal and "\ufffd" not in self.heal:
                prompt = prompt[:-1]
            else:
                self.heal = ""
        self.prompt_ids = prompt

    @property
    def priority(self) -> int:
        return int(self.request.priority)

    @property
    def user(self) -> str:
        return self.request.namespace

    @property
    def prefilling(self) -> bool:
        return not self.candidates and not self.prefill_done

    @property
    def done(self) -> bool:
        if self.request.prefill_only:
            return self.prefill_done
        return bool(self.candidates) and all(c.finished for c in self.candidates)

    def mark_started(self) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.perf_counter()
            self.timings.queue_ms = (self.first_step_at - self.handle.submitted_at) * 1e3

    def results(self) -> list[Candidate]:
        out = []
        for c in self.candidates:
            if c.cut is None:
                out.append(Candidate(c.text, list(c.tokens), c.finish_reason or "cancelled", c.logprob))
                continue
            # the tokens the cut text still shows (one cut through may be partly shown)
            kept = c.tokens_before(c.cut)
            logprob = c.logprob_of(kept) if len(c.logprob_sums) == len(c.tokens) else c.logprob
            out.append(Candidate(c.text[: c.cut], c.tokens[:kept], c.finish_reason or "cancelled", logprob))
        return out
