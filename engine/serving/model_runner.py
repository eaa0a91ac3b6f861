"""Runs a step of work for a batch of requests on the model: prefill chunks and decode steps.

Prefill consults the prefix cache once, then processes the prompt in chunks whose ends depend
only on positions (`prefix_cache.boundaries`: every 128-token block, then 16-token pieces),
storing a snapshot at every boundary, so resumed and cold computations are operation-for-
operation identical. Decode feeds the last sampled token; greedy decode may verify several
drafted tokens at once (speculative.py).

A step first plans one model call per sequence (a chunk, a token, or a token and its drafts),
then runs them: the calls the C decode step covers (CPU, up to `max_tokens` tokens each) as one
batched C call, which reads every weight once for all of them and gives each sequence exactly
what a call of its own gives; longer chunks (and every call where there is no C step: GPUs, FP8
numerics) through the model one at a time. The engine loop decides what is in a batch; this
file decides how it runs. `advance(req)` is one request's step, for scripts and evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from deepfim.engine.model.decode_step import DecodeStep
from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.engine.model.state import ModelState
from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer
from deepfim.engine.model.transformer import ForwardOutput, Transformer
from deepfim.engine.serving.healing import HealingVocab
from deepfim.engine.serving.prefix_cache import PrefixCache, boundaries
from deepfim.engine.serving.sampler import loop_safe_end, repeated_lines_cut, repeated_tokens_cut, sample
from deepfim.engine.serving.scheduler import WAITS
from deepfim.engine.serving.sequence import NGRAM_KEPT_PRIOR, NGRAM_KEPT_RECOVERY, ActiveRequest, CandidateState
from deepfim.engine.serving.speculative import (
    CopyDrafter,
    DraftLength,
    DraftStats,
    MtpDrafter,
    NgramDrafter,
    SpeculativeConfig,
)
from deepfim.engine.serving.token_choice import TokenChoice
from deepfim.kernels.decode_step import cpu as c_step_cpu

log = logging.getLogger(__name__)

MAX_COPY_DRAFT = 15  # with the token before them, one call of the C decode step


@dataclass
class _Call:
    """One planned model call of a step and what to do with its output."""

    req: ActiveRequest
    ids: list[int]
    state: ModelState
    logits: str  # "none" | "last" | "all"
    done: Callable[[ForwardOutput], None]
    prefill: bool


def _on_host(out: ForwardOutput) -> ForwardOutput:
    """Logits of a model on a GPU, moved to the host, where sampling and the stop rules run."""
    if out.logits is not None and out.logits.device.type != "cpu":
        return ForwardOutput(out.logits.float().cpu(), out.streams)
    return out


def serving_forward(model: Transformer, decode_step: DecodeStep | None, ids: list[int], state,
                    logits: str) -> ForwardOutput:  # fmt: skip
    """One inference call as the engine serves it: the C decode step for the few tokens it
    covers (`decode_step`, None where it does not apply), else the model's modules."""
    if decode_step is not None and len(ids) <= decode_step.max_tokens:
        return _on_host(ForwardOutput(*decode_step.batch([(ids, state, logits)])[0]))
    device = model.embed.weight.device
    return _on_host(model(torch.tensor([ids], device=device), state, logits=logits))


class ModelRunner:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        cache: PrefixCache | None = None,
        speculative: SpeculativeConfig | None = None,
        name: str = "model",
        decode_step: DecodeStep | None | bool = True,
        profile: ServingProfile | None = None,
    ) -> None:
        """`decode_step`: True builds the C step where it applies (CPU), False never uses it, or
        a prebuilt one. `profile`: the checkpoint's decoding aids (copy drafts, index-aware
        decoding); default: none."""
        self.model = model
        self.device = model.embed.weight.device
        self.profile = profile or ServingProfile.defaults(model.args.fim_orders)
        self.decode_step = None
        c_step = decode_step is True and self.device.type == "cpu"
        # a first start: the C step is still compiling; serve on the modules until it is there
        # (one prefill and a decode of the first request, at most) instead of waiting; the first
        # call after the build attaches it (`forward`)
        self._c_step_coming = c_step and c_step_cpu.building()
        if not self._c_step_coming:
            self.decode_step = DecodeStep.for_model(model) if decode_step is True else decode_step or None
            c_step = self.decode_step is not None
        self.tokenizer = tokenizer
        self.prefix_cache = cache
        self.chunk = cache.block if cache is not None else 128
        self.spec = speculative or SpeculativeConfig()
        self.draft_stats = DraftStats()
        self.name = name
        self.eos = tokenizer.special.eos
        self._healing_vocab: HealingVocab | None = None  # built at the first healed request
        self._prefilling: dict[int, ActiveRequest] = {}  # started requests still prefilling, by seq_no
        self._drafts = self.spec.max_draft  # n-gram/MTP draft tokens per sequence in the current step
        # what verifying T tokens costs here, learned from this runner's single-sequence calls
        self.draft_length = DraftLength(max(self.spec.max_draft, MAX_COPY_DRAFT) + 1)
        self._copy_room = MAX_COPY_DRAFT  # copy-draft tokens per sequence in the current step
        # MTP state is part of every cached snapshot, so the choice is per runner, not per request.
        # Where the C decode step serves the model (CPU), MTP drafts cost more than they save: the
        # MTP block and its second pass through the vocabulary head take about as long as a whole
        # decode step, and the block also runs over every prefill chunk (embedded model, 4K
        # context: 2.0-2.3 ms/token with MTP drafts vs 1.3 without, prefill 20% slower).
        use_mtp = self.spec.enabled and self.spec.use_mtp and model.args.n_mtp_layers > 0 and not c_step
        self.mtp = MtpDrafter(model) if use_mtp else None
        self.choice = TokenChoice(tokenizer, model.args.vocab_size, self.profile)

    def _attach_built_step(self) -> None:
        """Attaches the C step once its build is over (the build itself waits until the first
        request is served: `cbuild.release_later`); this call and every later one take it."""
        self._c_step_coming = False
        try:
            self.decode_step = DecodeStep.for_model(self.model)
        except Exception:  # the modules keep serving; `load` has logged why there is no C step
            log.exception("%s: the C decode step could not be attached", self.name)
        if self.decode_step is not None:
            log.info("%s: the C decode step is built; decode steps use it from now on", self.name)

    def forward(self, ids: list[int], state, logits: str) -> ForwardOutput:
        if self._c_step_coming and not c_step_cpu.compiling():
            self._attach_built_step()
        step = self.decode_step
        if step is None and self._c_step_coming:
            state.on_modules = True  # not what a cold run computes once the C step is there
        return serving_forward(self.model, step, ids, state, logits)

    # a step -----------------------------------------------------------------------------------
    def advance(self, req: ActiveRequest) -> None:
        """One step of work for `req` alone (raises what it raised)."""
        error = self.step([req]).get(req.seq_no)
        if error is not None:
            raise error

    @torch.inference_mode()
    def step(self, batch: list[ActiveRequest]) -> dict[int, Exception]:
        """One step of every request of `batch`: the next prefill chunk, or one token per live
        candidate. Returns the errors of requests that failed (by seq_no); the others went on."""
        failed: dict[int, Exception] = {}
        calls: list[_Call] = []
        decoding = sum(1 for r in batch if not r.prefilling for c in r.candidates if not c.finished)
        self._drafts = self.spec.drafts_per_sequence(decoding)
        self._copy_room = min(MAX_COPY_DRAFT, max(0, self.spec.step_rows // max(1, decoding) - 1))
        for req in batch:
            try:
                calls += self._plan(req)
            except Exception as exc:
                failed[req.seq_no] = exc
        t0 = time.perf_counter()
        outputs = self._run(calls, failed)
        elapsed_ms = (time.perf_counter() - t0) * 1e3  # the step's wall time is each request's wait
        if len(calls) == 1 and not calls[0].prefill:
            self.draft_length.observe(len(calls[0].ids), elapsed_ms)
        for req in {id(c.req): c for c in calls}.values():
            if req.prefill:
                req.req.timings.prefill_ms += elapsed_ms
            else:
                req.req.timings.decode_ms += elapsed_ms
        for call, out in zip(calls, outputs, strict=True):
            if call.req.seq_no in failed:
                continue
            try:
                call.done(out)
            except Exception as exc:
                failed[call.req.seq_no] = exc
        return failed

    def prefill_cost(self, req: ActiveRequest) -> int:
        """Prompt tokens of the next chunk of a prefilling request (0: its prompt is done;
        WAITS: it waits for another's prefill of its own prefix). The first call consults the
        prefix cache, which may serve the whole prompt."""
        if not req.started:
            if self._waits_for_another(req):
                return WAITS
            self._start(req)
            if req.prefilling:
                self._prefilling[req.seq_no] = req
        if not req.prefilling:
            return 0
        return self._next_end(req) - req.prefilled

    def _waits_for_another(self, req: ActiveRequest) -> bool:
        """Whether a started prefill of the same user, as urgent or more, is computing a prefix of
        this prompt that the cache does not hold yet: this request then starts once that chunk
        is cached, instead of computing the same tokens beside it. (The language server sends the
        head of a new file's prompt ahead, while it gathers the rest: `lsp_server/pipeline.py`.)"""
        if self.prefix_cache is None:
            return False
        for seq_no, other in list(self._prefilling.items()):
            if other.state is None or not other.prefilling or other.handle.cancelled:
                del self._prefilling[seq_no]  # finished, cancelled or failed
        others = [o for o in self._prefilling.values() if o.user == req.user and o.priority <= req.priority]
        if not others:
            return False
        if req.cache_keys is None:
            req.cache_keys = self.prefix_cache.keys(req.user, req.prompt_ids, req.request.anchors)
        mine = req.cache_keys
        for other in others:
            theirs = other.cache_keys
            ends = set(theirs.ends)
            for end in reversed(mine.ends):
                if end <= other.prefilled:
                    break
                if end in ends and mine.at(end) == theirs.at(end):
                    return True
        return False

    def _plan(self, req: ActiveRequest) -> list[_Call]:
        req.mark_started()
        if req.prefilling:
            if not req.started:
                self._start(req)
            if req.prefilling:
                return [self._plan_prefill(req)]
            return []
        calls = []
        for cand in req.candidates:
            if cand.finished:
                continue
            if req.handle.cancelled:
                cand.finish_reason = "cancelled"
            else:
                calls.append(self._plan_decode(req, cand))
        return calls

    def _run(self, calls: list[_Call], failed: dict[int, Exception]) -> list[ForwardOutput | None]:
        """Runs the calls: the C step's share batched (in groups of at most max_rows), the rest alone."""
        outputs: list[ForwardOutput | None] = [None] * len(calls)
        step = self.decode_step
        short = [i for i, c in enumerate(calls) if step is not None and len(c.ids) <= step.max_tokens]
        groups, rows = [[]], 0
        for i in short:
            if rows + len(calls[i].ids) > step.max_rows:
                groups.append([])
                rows = 0
            groups[-1].append(i)
            rows += len(calls[i].ids)
        for group in groups:
            if not group:
                continue
            try:
                results = step.batch([(calls[i].ids, calls[i].state, calls[i].logits) for i in group])
            except Exception:  # find the call at fault: the others must go on
                log.exception("%s: a batched step of %d calls failed; running them one by one", self.name, len(group))
                results = [self._alone(calls[i], failed) for i in group]
            for i, result in zip(group, results, strict=True):
                outputs[i] = None if result is None else _on_host(ForwardOutput(*result))
        for i, call in enumerate(calls):
            if outputs[i] is None and call.req.seq_no not in failed:
                try:
                    outputs[i] = self.forward(call.ids, call.state, call.logits)
                except Exception as exc:
                    failed[call.req.seq_no] = exc
        return outputs

    def _alone(self, call: _Call, failed: dict[int, Exception]):
        try:
            return self.decode_step.batch([(call.ids, call.state, call.logits)])[0]
        except Exception as exc:
            failed[call.req.seq_no] = exc
            return None

    # prefill ---------------------------------------------------------------------------------
    def _start(self, req: ActiveRequest) -> None:
        """Consults the prefix cache: the request resumes from its longest cached prefix."""
        req.started = True
        ids, anchors = req.prompt_ids, req.request.anchors
        cache, need_logits = self.prefix_cache, not req.request.prefill_only
        match = None
        if cache is not None:
            if req.cache_keys is None:  # hashed already where it waited (`_waits_for_another`)
                req.cache_keys = cache.keys(req.user, ids, anchors)
            match = cache.match(req.cache_keys, need_logits)
        if match is not None and match.state is not None:
            req.state, req.prefilled = match.state, match.length
            req.timings.cached_tokens = match.length
            if match.logits is not None:
                req.last_logits = match.logits
                self._start_candidates(req)
            elif req.request.prefill_only and match.length == len(ids):
                req.prefill_done, req.state = True, None
        else:
            req.state, req.prefilled = self.model.new_state(), 0

    def _next_end(self, req: ActiveRequest) -> int:
        """The end of the request's next prefill chunk. The 16-token sub-blocks of the prompt's
        tail are there for the decode step (a keystroke then resumes within 15 tokens); without
        one (the C step still compiling at a first start, or none here) each would cost a whole
        module-path forward (embedded model: ~25 ms, about what 128 tokens take), so the tail
        goes in one call, and a later keystroke resumes from the last block end instead."""
        ids, anchors = req.prompt_ids, req.request.anchors
        ends = boundaries(len(ids), self.chunk, anchors, sub_blocks=self.decode_step is not None)
        return next(b for b in ends if b > req.prefilled)

    def _plan_prefill(self, req: ActiveRequest) -> _Call:
        ids, end = req.prompt_ids, self._next_end(req)
        last = end == len(ids)

        def done(out: ForwardOutput) -> None:
            req.prefilled = req.handle.prefilled = end
            if self.mtp is not None:
                self.mtp.observe(req.state, out.streams)
                self.mtp.advance(req.state, ids[:end])
            if self.prefix_cache is not None:
                cold_like = not getattr(req.state, "on_modules", False)  # see ModelState.on_modules
                persist = req.request.persist and end in req.request.anchors and cold_like
                self.prefix_cache.insert(req.cache_keys, req.state, persist=persist)
            if last:
                req.last_logits = out.logits[0, -1]
                if not torch.isfinite(req.last_logits).all():
                    raise RuntimeError(
                        f"{self.name}: the model produced non-finite logits (NaN/Inf); its weights are probably "
                        "corrupt (`deepfim checksum --verify DIR` checks a checkpoint that has a manifest)"
                    )
                if self.prefix_cache is not None:
                    self.prefix_cache.insert_exact(req.cache_keys, req.state, req.last_logits)
                self._start_candidates(req)

        return _Call(req, ids[req.prefilled : end], req.state, "last" if last else "none", done, True)

    def _start_candidates(self, req: ActiveRequest) -> None:
        if req.request.prefill_only:
            req.prefill_done, req.state = True, None
            return
        params = req.request.sampling
        for i in range(params.n):
            generator = None
            if not params.is_greedy:
                generator = torch.Generator()
                if params.seed is not None:
                    generator.manual_seed(params.seed + i)
                else:
                    generator.seed()
            state = req.state if params.n == 1 else req.state.snapshot()
            cand = CandidateState(i, StreamDecoder(self.tokenizer), generator, state)
            req.candidates.append(cand)
            token, logprob = self._choose(req, cand, req.last_logits)
            self._accept(req, cand, token, logprob)
            self._draft_with_mtp(req, cand)
        req.state = None

    def _choose(self, req: ActiveRequest, cand: CandidateState, logits: torch.Tensor) -> tuple[int, float]:
        """The next token: healing's constraint while it lasts, then (greedy) the model's best
        choice that index-aware decoding allows, else plain sampling."""
        params = req.request.sampling
        if self._healing(req, cand) or not params.is_greedy:
            return sample(self._healed(req, cand, logits), params, cand.generator)
        return self.choice.greedy(req, cand, logits)

    # decode ----------------------------------------------------------------------------------
    def _plan_decode(self, req: ActiveRequest, cand: CandidateState) -> _Call:
        params = req.request.sampling
        drafts, source = [], ""
        if params.is_greedy and params.speculative and self.spec.enabled and not self._healing(req, cand):
            left = params.max_tokens - len(cand.tokens) - 1
            if self.profile.copy_drafts and min(left, self._copy_room) > 0:
                if cand.copier is None:
                    excluded = req.request.copy_excluded
                    cand.copier = CopyDrafter(req.prompt_ids + cand.tokens, self.profile.copy_min_match, excluded)
                drafts, source = cand.copier.propose(min(left, self._copy_room)), "copy"
            room = min(left, self._drafts)
            if not drafts and room > 0:
                if cand.drafter is None:
                    cand.drafter = NgramDrafter(req.prompt_ids + cand.tokens, self.spec.ngram)
                length = self.draft_length.best(cand.ngram_kept, room)
                if length:
                    drafts, source = cand.drafter.propose(length), "ngram"
                else:  # not worth it now; try again once the candidate's record has faded
                    cand.ngram_kept += (NGRAM_KEPT_PRIOR - cand.ngram_kept) * NGRAM_KEPT_RECOVERY
            if not drafts and cand.mtp_draft is not None and room > 0:
                drafts, source = [cand.mtp_draft], "mtp"
        if drafts:
            start = cand.state.pos

            def verified(out: ForwardOutput) -> None:
                self._verify(req, cand, drafts, source, start, out)
                self._draft_with_mtp(req, cand)

            return _Call(req, [cand.next_token, *drafts], cand.state, "all", verified, False)

        def decoded(out: ForwardOutput) -> None:
            if self._uses_mtp(req):
                self.mtp.observe(cand.state, out.streams)
            token, logprob = self._choose(req, cand, out.logits[0, -1])
            self._accept(req, cand, token, logprob)
            self._draft_with_mtp(req, cand)

        return _Call(req, [cand.next_token], cand.state, "last", decoded, False)

    def _verify(
        self, req: ActiveRequest, cand: CandidateState, drafts: list[int], source: str, start: int, out: ForwardOutput
    ) -> None:
        """Fed [next_token, *drafts] at once: keeps the drafts the model agrees with (token_choice.py)."""
        preds, n_ok, logprobs = self.choice.keep(req, cand, out.logits[0], drafts, source)
        self.draft_stats.record(source, len(drafts), n_ok)
        if source == "ngram":
            cand.ngram_kept = (cand.ngram_kept + n_ok / len(drafts)) / 2
        req.timings.draft_tokens += len(drafts)
        req.timings.accepted_draft_tokens += n_ok
        if n_ok < len(drafts):
            # take back the rejected drafts: the state must hold exactly the tokens that are kept
            cand.state.keep_first(n_ok + 1, start, self.model.args.window_size)
        if self._uses_mtp(req):
            self.mtp.observe(cand.state, out.streams[:, : n_ok + 1])
        for j in range(n_ok + 1):
            token = preds[j]
            self._accept(req, cand, token, float(logprobs[j, token]))
            if cand.finished:
                return

    def _draft_with_mtp(self, req: ActiveRequest, cand: CandidateState) -> None:
        """Brings the MTP block up to the sampled token and keeps its guess for the token after."""
        cand.mtp_draft = None
        if self._uses_mtp(req) and not cand.finished and cand.state is not None:
            cand.mtp_draft = self.mtp.advance(cand.state, req.prompt_ids + cand.tokens)

    def _uses_mtp(self, req: ActiveRequest) -> bool:
        params = req.request.sampling
        return self.mtp is not None and params.is_greedy and params.n == 1 and params.speculative

    def _accept(self, req: ActiveRequest, cand: CandidateState, token: int, logprob: float) -> None:
        """Appends a sampled token: stop rules, streaming, next input."""
        params = req.request.sampling
        req.timings.generated_tokens += 1
        if token == self.eos:
            cand.finish_reason = "eos"
        else:
            cand.tokens.append(token)
            cand.logprob += logprob
            cand.logprob_sums.append(cand.logprob)
            for drafter in (cand.drafter, cand.copier):
                if drafter is not None:
                    drafter.append(token)
            cand.raw_text += cand.decoder.push(token)
            before = len(cand.text)
            cand.text = cand.raw_text[len(req.heal) :]
            cand.token_ends.append(len(cand.text))
            cand.cut = req.stop.find(cand.text, before)
            if cand.cut is None and params.stop_loops:
                cand.cut = repeated_lines_cut(cand.text, before)
            if cand.cut is None and params.stop_loops:
                cand.cut = repeated_tokens_cut(cand.tokens, cand.token_ends, cand.text)
            if cand.cut is not None:
                cand.finish_reason = "stop"
            elif len(cand.tokens) >= params.max_tokens:
                cand.finish_reason = "length"
            elif params.confidence_floor is not None and cand.logprob < params.confidence_floor * params.max_tokens:
                cand.finish_reason = "low_confidence"  # no continuation can bring its mean up to the floor
            else:
                cand.next_token = token
        self._stream(req, cand)

    def _healing(self, req: ActiveRequest, cand: CandidateState) -> bool:
        return len(cand.decoder.text) < len(req.heal)

    def _healed(self, req: ActiveRequest, cand: CandidateState, logits: torch.Tensor) -> torch.Tensor:
        """While the healed prompt text is not reproduced, only tokens consistent with it."""
        if not self._healing(req, cand):
            return logits
        rest = req.heal[len(cand.decoder.text) :]
        if self._healing_vocab is None:
            self._healing_vocab = HealingVocab(self.tokenizer, logits.shape[-1])
        allowed = self._healing_vocab.allowed(rest)
        if not allowed.any():  # cannot happen with a byte-level vocabulary; stay safe
            return logits
        return logits.masked_fill(~allowed, float("-inf"))

    def _stream(self, req: ActiveRequest, cand: CandidateState) -> None:
        if req.on_text is None:
            return
        if cand.finished:
            end = len(cand.text) if cand.cut is None else cand.cut
        else:
            end = req.stop.safe_prefix(cand.text)
            if req.request.sampling.stop_loops:
                end = min(end, loop_safe_end(cand.text))
        if end > cand.streamed:
            tokens = cand.tokens_before(end)
            mean = cand.logprob_of(tokens) / tokens if tokens else 0.0
            try:
                req.on_text(cand.index, cand.text[cand.streamed : end], mean)
            except Exception:  # a broken consumer must not kill the engine loop
                log.exception("stream callback of %s failed", req.request.request_id)
            cand.streamed = end
