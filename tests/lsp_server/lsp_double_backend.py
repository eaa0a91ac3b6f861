"""TEST DOUBLE — not a model. A `CompletionBackend` for language-server tests until the
in-process engine (`deepfim.engine.serving.local_backend.LocalBackend`) is used instead.

`CopyBackend` honours the protocol for real: it decodes the packed prompt with the given
tokenizer, "predicts" by copying what followed the last earlier occurrence of the text
before the cursor (an n-gram copy, deterministic), and streams it token by token on a
worker thread with a per-step delay, checking `handle.cancel_event` between steps. With no
match it emits filler without newlines until `max_tokens`, which makes long decodes for
cancellation tests. Stop strings, `max_tokens`, `n`, timings and statistics behave as the
engine's do; cancellation fails the future with `deepfim.engine.api.CancelledError`.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from deepfim.engine.api import (
    CancelledError,
    Candidate,
    CompletionHandle,
    CompletionRequest,
    CompletionResult,
    StreamCallback,
    Timings,
)
from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer

FILLER = " 0"
MAX_COPY_CHARS = 400
KEY_LENGTHS = (32, 16, 8, 5, 3)


def _fim_parts(tok: Tokenizer, ids: list[int]) -> tuple[str, str, str]:
    """(context text before the FIM part, prefix, suffix) of a PSM or SPM prompt."""
    sp = tok.special
    begin = ids.index(sp.fim_begin)
    hole = ids.index(sp.fim_hole)
    end = ids.index(sp.fim_end)
    context = tok.decode([i for i in ids[:begin] if i not in tok.special_id_set])
    if hole == begin + 1:  # SPM: <begin><hole>suffix<end>prefix
        return context, tok.decode(ids[end + 1 :]), tok.decode(ids[hole + 1 : end])
    return context, tok.decode(ids[begin + 1 : hole]), tok.decode(ids[hole + 1 : end])


def continuation(context: str, prefix: str, suffix: str, variant: int = 0) -> str:
    """What followed the `variant`-th latest earlier occurrence of the text before the cursor
    (not counting the cursor file's own copy: what follows the cursor there is the suffix)."""
    haystack = context + "\n" + prefix
    head = suffix[:16]
    for length in KEY_LENGTHS:
        key = prefix[-length:]
        if len(key) < length:
            continue
        pos, found = len(haystack) - length, []
        while len(found) <= variant:
            pos = haystack.rfind(key, 0, pos + length - 1)
            if pos < 0 or pos + length >= len(haystack):
                break
            if not (head.strip() and haystack.startswith(head, pos + length)):
                found.append(pos + length)
        if found:
            start = found[min(variant, len(found) - 1)]
            return haystack[start : start + MAX_COPY_CHARS]
    return ""


class CopyBackend:
    """Deterministic streaming backend with real cancellation (see module docstring)."""

    def __init__(self, tokenizer_path: str, step_s: float = 0.002, prefill_s_per_1k: float = 0.002) -> None:
        self.tokenizer_path = str(tokenizer_path)
        self._tok = Tokenizer.from_file(tokenizer_path)
        self._step_s = step_s
        self._prefill_s_per_1k = prefill_s_per_1k
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-backend")
        self._lock = threading.Lock()
        self._stats = {
            "requests": 0,
            "completed": 0,
            "cancelled": 0,
            "active": 0,
            "generated_tokens": 0,  # of completed requests
            "streamed_pieces": 0,  # text pieces handed to on_text so far, all requests
        }

    def fim_orders(self, mode: str) -> tuple[str, ...]:
        return ("psm", "spm")

    def serving_profile(self, mode: str) -> dict:
        # the files layout: evidence and the cursor window stay where `_fim_parts` reads them
        return {"prompt_layout": "files", "fim_order": "spm", "repository_tokens": 4096}

    def submit(self, request: CompletionRequest, on_text: StreamCallback | None = None) -> CompletionHandle:
        handle = CompletionHandle(request)
        with self._lock:
            self._stats["requests"] += 1
        self._pool.submit(self._run, handle, on_text)
        return handle

    def stats(self) -> dict:
        with self._lock:
            return {"backend": "copy-double", **self._stats}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, handle: CompletionHandle, on_text: StreamCallback | None) -> None:
        with self._lock:
            self._stats["active"] += 1
        try:
            result = self._generate(handle, on_text)
        except CancelledError as exc:
            with self._lock:
                self._stats["cancelled"] += 1
            handle.future.set_exception(exc)
        except Exception as exc:  # surface bugs in the double through the future
            handle.future.set_exception(exc)
        else:
            with self._lock:
                self._stats["completed"] += 1
            handle.future.set_result(result)
        finally:
            with self._lock:
                self._stats["active"] -= 1

    def _sleep(self, handle: CompletionHandle, seconds: float) -> None:
        if handle.cancel_event.wait(seconds):
            raise CancelledError(handle.request.request_id)

    def _generate(self, handle: CompletionHandle, on_text: StreamCallback | None) -> CompletionResult:
        request, sampling = handle.request, handle.request.sampling
        started = time.perf_counter()
        timings = Timings(queue_ms=(started - handle.submitted_at) * 1000, prompt_tokens=len(request.prompt))
        self._sleep(handle, self._prefill_s_per_1k * len(request.prompt) / 1000)
        if request.prefill_only:  # a background prefill (the repository part): no FIM parts, no text
            timings.prefill_ms = (time.perf_counter() - started) * 1000
            return CompletionResult(candidates=[], timings=timings)
        context, prefix, suffix = _fim_parts(self._tok, request.prompt)
        timings.prefill_ms = (time.perf_counter() - started) * 1000
        decode_start = time.perf_counter()
        texts = [continuation(context, prefix, suffix, v) or FILLER * sampling.max_tokens for v in range(sampling.n)]
        token_lists = [self._tok.encode(text)[: sampling.max_tokens] for text in texts]
        out_ids: list[list[int]] = [[] for _ in texts]
        out_text = ["" for _ in texts]
        decoders = [StreamDecoder(self._tok) for _ in texts]
        finished = [""] * len(texts)
        for step in range(max(len(t) for t in token_lists)):
            self._sleep(handle, self._step_s)
            for k, tokens in enumerate(token_lists):
                if finished[k] or step >= len(tokens):
                    finished[k] = finished[k] or "eos"
                    continue
                piece = decoders[k].push(tokens[step])
                out_ids[k].append(tokens[step])
                new_text = out_text[k] + piece
                stop_at = min((new_text.find(s) for s in sampling.stop if s in new_text), default=-1)
                if stop_at >= 0:
                    piece = new_text[len(out_text[k]) : stop_at]
                    new_text, finished[k] = new_text[:stop_at], "stop"
                out_text[k] = new_text
                if piece and on_text is not None:
                    with self._lock:
                        self._stats["streamed_pieces"] += 1
                    on_text(k, piece, -0.1 * (k + 1))  # the mean its candidate's logprob says
        timings.decode_ms = (time.perf_counter() - decode_start) * 1000
        timings.generated_tokens = sum(len(ids) for ids in out_ids)
        with self._lock:
            self._stats["generated_tokens"] += timings.generated_tokens
        candidates = [
            Candidate(text, ids, finished[k] or "length", logprob=-0.1 * (k + 1) * max(len(ids), 1))
            for k, (text, ids) in enumerate(zip(out_text, out_ids, strict=True))
        ]
        return CompletionResult(candidates, timings)
