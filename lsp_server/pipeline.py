"""One completion, from the text around the cursor to ranked suggestions.

    cursor text → analyse (extent, stop rule) + pack context → engine (streamed; stopped
    early by the stop rule, or by cancellation) → shape each candidate → rank

With a deadline (`show_by_s`, the server's `showByMs`), a suggestion of several lines still
being written when it passes is shown with the lines it has complete, if they clear the
confidence gate; the engine writes the rest meanwhile (`CompletionOutcome.rest`), which the
server keeps for when the user accepts them (a first line costs tens of milliseconds of
decode; four lines, up to a hundred on a small CPU).

`CompletionPipeline.complete` is shared by the language server and `deepfim complete`.
Work that costs CPU (tree-sitter, tokenizing, packing, shaping) runs on one context thread
so the LSP event loop keeps reading messages; the engine decodes on its own threads. If the
awaiting task is cancelled (`$/cancelRequest`, or a newer request for the same document),
the engine handle is cancelled too and the decode stops between two steps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deepfim.context.languages import for_editor
from deepfim.context.prompt_builder import BuiltPrompt, PromptSpec
from deepfim.engine.api import CancelledError as EngineCancelled
from deepfim.engine.api import CompletionHandle, CompletionRequest, CompletionResult, Timings
from deepfim.lsp_server.backend_session import BackendSession
from deepfim.lsp_server.context_source import ContextSource, PackedContext, PrivateFile
from deepfim.lsp_server.modes import ModePreset, confidence_gate, prompt_spec
from deepfim.lsp_server.runs import PartialText
from deepfim.lsp_server.shaping.extent import Extent
from deepfim.lsp_server.shaping.shape import ShapingContext, analyse, rank, shape

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompletionInput:
    path: Path | None
    language_id: str
    prefix: str  # document text before the cursor
    suffix: str  # document text after the cursor
    invoked: bool = False  # asked for explicitly: the confidence gate does not apply
    # whether the engine holds the prompt's copy of the cursor file (`CopyPrefiller.holds`), and
    # whether it may hold a copy of that text (`may_hold`, asked before tokenizing it): an
    # automatic request leaves out a copy it does not hold (a keystroke never waits for one)
    copy_held: Callable[[BuiltPrompt], bool] | None = None
    copy_wanted: Callable[[str], bool] | None = None


@dataclass
class StageTimings:
    """Milliseconds per stage of one request, as reported to clients and `deepfim/status`."""

    debounce_ms: float = 0.0
    context_ms: float = 0.0  # analyse + pack
    queue_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    post_ms: float = 0.0
    total_ms: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    model_call: bool = False

    def as_dict(self) -> dict:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


@dataclass
class CompletionOutcome:
    items: list[str]  # best first; empty: nothing to show
    timings: StageTimings
    mode: str
    extent: str
    context_files: list[str] = field(default_factory=list)
    context_source: str = "file"
    finish_reason: str = ""
    scores: list[float] = field(default_factory=list)  # mean log-probability per token of each item
    reason: str = ""  # why there is nothing to show, when `items` is empty
    # shown before the end (the deadline passed): the whole suggestion, still being written;
    # await it (None: cancelled, failed or nothing) or cancel it
    rest: asyncio.Future[CompletionOutcome | None] | None = None


def _consume(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class _CancelToken:
    """Carries cancellation from the awaiting task to a request whose engine handle may not
    exist yet (it is created on the context thread)."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.handle: CompletionHandle | None = None

    def cancel(self) -> None:
        self.cancelled.set()
        if self.handle is not None:
            self.handle.cancel()


def complete_lines(text: str) -> str | None:
    """`text` up to its last line break, if a line before it has something on it."""
    end = text.rfind("\n")
    return text[:end] if end > 0 and text[:end].strip() else None


@dataclass
class _ShowBy:
    """The deadline of a request that may be shown before its end, and what it showed."""

    at: float  # perf_counter time
    gate: float | None  # the confidence gate the lines shown must clear
    loop: asyncio.AbstractEventLoop
    shown: asyncio.Future[tuple[str, float]]  # resolved with (lines, their mean log-probability)
    shown_at: float | None = None


@dataclass
class _Stream:
    """Text streamed per candidate; asks the engine to stop once the stop rule has decided."""

    ctx: ShapingContext
    n: int
    ticket: _CancelToken
    partial: PartialText | None = None
    show_by: _ShowBy | None = None
    texts: dict[int, str] = field(default_factory=dict)
    means: dict[int, float] = field(default_factory=dict)  # mean log-probability per token so far
    done: set[int] = field(default_factory=set)
    first_at: float | None = None
    last_at: float | None = None
    stopped_early: bool = False

    def on_text(self, index: int, delta: str, mean_logprob: float | None) -> None:
        now = time.perf_counter()
        self.first_at = self.first_at or now
        self.last_at = now
        if index in self.done:
            return
        text = self.texts.get(index, "") + delta
        self.texts[index] = text
        if mean_logprob is not None:
            self.means[index] = mean_logprob
        if index == 0 and self.partial is not None:
            self.partial.text = text
        if self.ctx.limit.cut(text) is not None:
            self.done.add(index)
            if len(self.done) >= self.n and self.ticket.handle is not None:
                self.stopped_early = True
                self.ticket.handle.cancel()
        elif self.show_by is not None:
            self._maybe_show(text, now, mean_logprob)

    def _maybe_show(self, text: str, now: float, mean_logprob: float | None) -> None:
        """Past the deadline, shows the complete lines if they clear the gate (engine thread)."""
        show = self.show_by
        if show.shown_at is not None or now < show.at:
            return
        lines = complete_lines(text)
        if lines is None:
            return
        if show.gate is not None and (mean_logprob is None or mean_logprob < show.gate):
            return  # the next line may bring the mean up; the whole suggestion is gated anyway
        show.shown_at = now
        score = mean_logprob if mean_logprob is not None else 0.0
        show.loop.call_soon_threadsafe(_resolve, show.shown, (lines, score))


def _resolve(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


@dataclass
class _Prepared:
    ctx: ShapingContext
    packed: PackedContext | None
    stream: _Stream | None
    handle: CompletionHandle | None
    context_ms: float
    submitted_at: float = 0.0
    gate: float | None = None  # the checkpoint's confidence gate (mean log-probability per token)
    reason: str = ""  # why nothing was submitted


class CompletionPipeline:
    """Runs completions; owns the context thread."""

    def __init__(self, executor: ThreadPoolExecutor | None = None) -> None:
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepfim-context")
        self._heads_sent: dict[Path | None, tuple[int, int]] = {}  # per file: the last prompt head sent ahead

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._executor

    async def complete(
        self,
        inp: CompletionInput,
        preset: ModePreset,
        session: BackendSession,
        source: ContextSource,
        debounce_s: float = 0.0,
        partial: PartialText | None = None,
        spec: PromptSpec | None = None,
        show_by_s: float | None = None,
    ) -> CompletionOutcome:
        """Complete at the cursor; cancel the awaiting task to abort (decode included).

        `partial`, if given, follows the first candidate's raw text as it streams in; `spec`
        overrides the prompt the mode and the checkpoint's profile ask for (evaluation). With
        `show_by_s` (seconds from the call, debounce included), a single candidate still being
        written then may come back with its complete lines and the whole in `outcome.rest`.
        """
        started = time.perf_counter()
        timings = StageTimings()
        if debounce_s > 0:
            await asyncio.sleep(debounce_s)
            timings.debounce_ms = (time.perf_counter() - started) * 1000
        loop = asyncio.get_running_loop()
        ticket = _CancelToken()
        handed_on = False  # the engine goes on writing for `outcome.rest`
        try:
            show_by = _ShowBy(started + show_by_s, None, loop, loop.create_future()) if show_by_s is not None else None
            prepared = await loop.run_in_executor(
                self._executor, self._prepare, inp, preset, session, source, ticket, partial, spec, show_by
            )
            timings.context_ms = prepared.context_ms
            outcome = CompletionOutcome([], timings, preset.name, prepared.ctx.extent.value)
            if prepared.handle is None:
                outcome.reason = prepared.reason
                return self._finish_timing(outcome, started)
            outcome.context_files = prepared.packed.included if prepared.packed else []
            outcome.context_source = prepared.packed.source if prepared.packed else "file"
            shown = await self._wait_for_lines(prepared)
            if shown is not None:
                outcome = self._lines_outcome(outcome, prepared, *shown)
                if outcome.items:
                    rest = self._rest(prepared, ticket, dataclasses.replace(timings), preset.name)
                    outcome.rest = asyncio.ensure_future(rest)
                    handed_on = True
                    return self._finish_timing(outcome, started)
                # nothing left of them after shaping: wait for the whole suggestion after all
                outcome = CompletionOutcome([], timings, preset.name, prepared.ctx.extent.value,
                                            outcome.context_files, outcome.context_source)  # fmt: skip
            await self._whole(outcome, prepared)
            return self._finish_timing(outcome, started)
        except asyncio.CancelledError:
            ticket.cancel()
            raise
        finally:
            if not handed_on:
                self._stop_engine(ticket)  # an error on our side must not leave the engine decoding

    async def _whole(self, outcome: CompletionOutcome, prepared: _Prepared) -> None:
        """Waits for the engine's result and fills `outcome` with its shaped, ranked candidates."""
        result = await self._wait(prepared)
        post_start = time.perf_counter()
        self._engine_timings(outcome.timings, prepared, result)
        outcome.items, outcome.scores, outcome.finish_reason, outcome.reason = await asyncio.get_running_loop(
        ).run_in_executor(self._executor, self._post, prepared, result)  # fmt: skip
        outcome.timings.post_ms = (time.perf_counter() - post_start) * 1000

    async def _rest(
        self, prepared: _Prepared, ticket: _CancelToken, timings: StageTimings, mode: str
    ) -> CompletionOutcome | None:
        """The whole of a suggestion shown before its end; None if it was cancelled, failed or
        came to nothing."""
        outcome = CompletionOutcome([], timings, mode, prepared.ctx.extent.value)
        try:
            await self._whole(outcome, prepared)
            return outcome if outcome.items else None
        except asyncio.CancelledError:
            ticket.cancel()
            raise
        except Exception:  # the backend failed: what was shown stays shown
            logger.warning("the rest of a suggestion shown early failed", exc_info=True)
            return None
        finally:
            self._stop_engine(ticket)

    @staticmethod
    def _stop_engine(ticket: _CancelToken) -> None:
        if not ticket.cancelled.is_set() and ticket.handle is not None and not ticket.handle.done():
            ticket.cancel()

    def _lines_outcome(
        self, outcome: CompletionOutcome, prepared: _Prepared, lines: str, score: float
    ) -> CompletionOutcome:
        """`outcome` with the complete lines shown at the deadline, shaped and gated like a whole one."""
        stream = prepared.stream
        t = outcome.timings
        live = prepared.handle.live_timings if prepared.handle is not None else None
        if live is not None:
            t.queue_ms, t.prefill_ms, t.cached_tokens = live.queue_ms, live.prefill_ms, live.cached_tokens
        elif stream.first_at is not None:
            t.prefill_ms = (stream.first_at - prepared.submitted_at) * 1000
        t.decode_ms = (stream.show_by.shown_at - (stream.first_at or stream.show_by.shown_at)) * 1000
        t.model_call = True
        t.prompt_tokens = len(prepared.packed.prompt) if prepared.packed is not None else 0
        items, scores, _, reason = self._ranked(prepared, [(lines, score, 1)], "stop")
        outcome.items, outcome.scores, outcome.reason = items, scores, reason
        outcome.finish_reason = "shown_by_deadline"
        return outcome

    @staticmethod
    def _finish_timing(outcome: CompletionOutcome, started: float) -> CompletionOutcome:
        outcome.timings.total_ms = (time.perf_counter() - started) * 1000
        return outcome

    def _prepare(
        self,
        inp: CompletionInput,
        preset: ModePreset,
        session: BackendSession,
        source: ContextSource,
        ticket: _CancelToken,
        partial: PartialText | None = None,
        spec: PromptSpec | None = None,
        show_by: _ShowBy | None = None,
    ) -> _Prepared:
        """On the context thread: analyse the cursor, pack the prompt, submit."""
        start = time.perf_counter()
        language = for_editor(inp.language_id, inp.path)
        ctx = analyse(inp.prefix, inp.suffix, language, preset.max_lines)
        if ctx.extent is Extent.NONE or ticket.cancelled.is_set():
            reason = "cursor inside a word" if ctx.extent is Extent.NONE else "cancelled"
            return _Prepared(ctx, None, None, None, (time.perf_counter() - start) * 1000, reason=reason)
        try:
            spec = spec or prompt_spec(preset, session.profile(preset.name))
            wanted = None if inp.invoked else inp.copy_wanted
            on_head = self._head_sender(inp, preset, session, ticket)
            packed = source.pack(session.tokenizer, inp.path, inp.prefix, inp.suffix, spec, wanted, on_head)
            if inp.copy_held is not None and not inp.invoked and not inp.copy_held(packed.built):
                packed = packed.without_copy()
        except PrivateFile as exc:
            logger.info("no completion: %s", exc)
            return _Prepared(ctx, None, None, None, (time.perf_counter() - start) * 1000, reason="private file")
        sampling = preset.sampling
        if ctx.extent is Extent.SINGLE_LINE:
            sampling = dataclasses.replace(sampling, stop=("\n",))
        # the gate keeps doubtful suggestions from popping up while typing; an explicit request
        # shows what the model wrote (the user asked, and can dismiss it)
        gate = None if inp.invoked else confidence_gate(preset, session.profile(preset.name))
        if gate is not None and sampling.n == 1:  # decoding stops once the gate is out of reach
            sampling = dataclasses.replace(sampling, confidence_floor=gate)
        request = CompletionRequest(
            prompt=packed.prompt.ids, sampling=sampling, priority=preset.priority, mode=preset.name,
            hints=packed.built.hints, copy_excluded=packed.built.own_ranges(), anchors=packed.built.anchors(),
        )  # fmt: skip
        if show_by is not None and (sampling.n > 1 or ctx.extent is Extent.SINGLE_LINE):
            show_by = None  # one line is shown whole; several candidates are ranked whole
        elif show_by is not None:
            show_by.gate = gate
        stream = _Stream(ctx, sampling.n, ticket, partial, show_by)
        context_ms = (time.perf_counter() - start) * 1000
        if ticket.cancelled.is_set():
            return _Prepared(ctx, packed, None, None, context_ms, reason="cancelled")
        submitted_at = time.perf_counter()
        handle = session.backend.submit(request, stream.on_text)
        ticket.handle = handle
        if ticket.cancelled.is_set():
            handle.cancel()
        return _Prepared(ctx, packed, stream, handle, context_ms, submitted_at, gate)

    def _head_sender(self, inp: CompletionInput, preset: ModePreset, session: BackendSession, ticket: _CancelToken):
        """`build_prompt`'s on_head: the engine prefills a prompt's head (header, suffix, far prefix:
        a newly opened file's or a new line's) while the context thread gathers the evidence
        (boltons on 2 cores: a new file's context stage ~39 ms, beside the head's ~150 tokens),
        and the whole prompt waits for it there (ModelRunner._waits_for_another) instead of
        starting from the shared part (new file at once: p50 227 -> 170 ms). A
        head with the file's copy in it is not sent: the copy may still be left out (copy_held).
        The last head sent per file is remembered: typing on a line keeps its head."""

        def send(ids: list[int], anchors: tuple[int, ...], has_copy: bool) -> None:
            if has_copy or ticket.cancelled.is_set() or not anchors:
                return
            key = (len(ids), hash(tuple(ids[anchors[0] :])))
            if self._heads_sent.get(inp.path) == key:
                return
            self._heads_sent[inp.path] = key
            if len(self._heads_sent) > 256:
                self._heads_sent.pop(next(iter(self._heads_sent)))
            request = CompletionRequest.prefill_ahead(list(ids), anchors, preset.name, priority=preset.priority)
            try:
                session.backend.submit(request)
            except Exception as exc:  # an aid: the whole prompt is sent whatever happens to it
                logger.debug("prompt head not sent ahead: %r", exc)

        return send

    @staticmethod
    async def _wait_for_lines(prepared: _Prepared) -> tuple[str, float] | None:
        """The lines shown at the deadline, if the stream shows some before the engine ends."""
        show_by = prepared.stream.show_by if prepared.stream is not None else None
        if show_by is None:
            return None
        engine_future = asyncio.wrap_future(prepared.handle.future)
        engine_future.add_done_callback(_consume)  # `_wait` reads the result (its own wrapper)
        # asyncio.wait leaves both running when it returns or is cancelled
        await asyncio.wait((engine_future, show_by.shown), return_when=asyncio.FIRST_COMPLETED)
        if engine_future.done():
            show_by.shown.cancel()
            return None
        return show_by.shown.result()

    @staticmethod
    async def _wait(prepared: _Prepared) -> CompletionResult | None:
        """The engine's result; None when it was stopped by our own stop rule and the
        engine reports cancellation by raising."""
        assert prepared.handle is not None and prepared.stream is not None
        engine_future = asyncio.wrap_future(prepared.handle.future)
        try:
            # shield: cancelling this task must not cancel the engine's own future (the
            # engine would then fail to set its result); the ticket cancels the handle
            return await asyncio.shield(engine_future)
        except asyncio.CancelledError:
            engine_future.add_done_callback(_consume)  # its cancellation error is expected
            raise
        except EngineCancelled:
            if prepared.stream.stopped_early:
                return None
            raise asyncio.CancelledError from None

    @staticmethod
    def _engine_timings(timings: StageTimings, prepared: _Prepared, result: CompletionResult | None) -> None:
        timings.model_call = True
        if prepared.packed is not None:
            timings.prompt_tokens = len(prepared.packed.prompt)
        engine_timings = result.timings if result is not None else None
        if engine_timings is not None and engine_timings != Timings():
            timings.queue_ms = engine_timings.queue_ms
            timings.prefill_ms = engine_timings.prefill_ms
            timings.decode_ms = engine_timings.decode_ms
            timings.cached_tokens = engine_timings.cached_tokens
            timings.generated_tokens = engine_timings.generated_tokens
            return
        stream = prepared.stream
        if stream is not None and stream.first_at is not None:  # measured from the stream instead
            timings.prefill_ms = (stream.first_at - prepared.submitted_at) * 1000
            timings.decode_ms = ((stream.last_at or stream.first_at) - stream.first_at) * 1000

    @staticmethod
    def _post(prepared: _Prepared, result: CompletionResult | None) -> tuple[list[str], list[float], str, str]:
        """On the context thread: shape and rank the candidates; (texts, scores, finish reason,
        why there is nothing to show)."""
        assert prepared.stream is not None
        if result is not None and result.candidates:
            raw = [(c.text, c.logprob, max(len(c.token_ids), 1)) for c in result.candidates]
            finish = result.candidates[0].finish_reason
        else:
            # stopped by the stop rule: the engine's result is gone, the stream's means are left
            # (the gate applies to them as to a whole candidate's)
            texts, means = prepared.stream.texts, prepared.stream.means
            raw = [(texts[i], means.get(i, 0.0), 1) for i in sorted(texts)]
            finish = "stop"
        if prepared.stream.stopped_early:
            finish = "stop"
        return CompletionPipeline._ranked(prepared, raw, finish)

    @staticmethod
    def _ranked(
        prepared: _Prepared, raw: list[tuple[str, float, int]], finish: str
    ) -> tuple[list[str], list[float], str, str]:
        """Shapes, ranks and gates (text, logprob, tokens) candidates."""
        ranked = rank([(shape(text, prepared.ctx), logprob, n) for text, logprob, n in raw])
        scores = [r.score for r in ranked]
        if ranked and prepared.gate is not None and ranked[0].score < prepared.gate:
            return [], scores, "low_confidence", f"confidence {ranked[0].score:.2f} below the gate {prepared.gate:.2f}"
        wrote = any(text.strip() for text, _, _ in raw)
        empty = "" if ranked else "empty after shaping" if wrote else "the model wrote nothing"
        return [r.text for r in ranked], scores, finish, empty
