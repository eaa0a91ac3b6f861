"""OpenAI `/v1/completions` bodies ⇄ the team server's requests and results.

``prompt`` is either text before the cursor (with ``suffix``, the text after it: the server
builds the FIM prompt in the order the serving checkpoint was trained on) or, as OpenAI allows, a
list of token ids: a prompt the client packed itself with the server's tokenizer (what the
language server's `RemoteBackend` sends). ``model`` names a mode (``instant`` by default,
``expert``). Deviation from OpenAI: ``temperature`` defaults to 0 (code completion wants the
greedy answer). Parameters the server does not implement (``logprobs``, ``echo``, ``best_of``,
penalties, ``logit_bias``) are refused with a 400 that names them, rather than ignored; other
unknown fields are ignored. DeepFIM fields: ``priority``, ``namespace``, ``speculative``,
``token_healing``, ``stop_loops``, ``confidence_floor``; every response carries ``deepfim`` (token ids, log-probability
and timings per candidate) beside the OpenAI fields.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass

from deepfim.engine.api import CompletionResult, Priority
from deepfim.engine.server.requests import (
    CompleteSpec,
    RequestError,
    field,
    parse_priority,
    parse_prompt_ids,
    parse_sampling,
)

FINISH_REASON = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "stop", "low_confidence": "stop"}
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "stop", "n", "seed", "speculative", "token_healing",
                   "stop_loops", "confidence_floor")  # fmt: skip
# OpenAI parameters and the value that means "not used": anything else is refused by name
NOT_IMPLEMENTED = {"logprobs": (None, 0, False), "echo": (None, False), "best_of": (None, 1),
                   "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "logit_bias": (None, {})}  # fmt: skip


@dataclass
class ParsedBody:
    """A checked completions body: the spec, and the text to tokenize when the prompt was text."""

    spec: CompleteSpec
    prefix: str | None = None
    suffix: str | None = None

    @property
    def needs_tokenizing(self) -> bool:
        return self.prefix is not None

    def text_bytes(self) -> int:
        return len((self.prefix or "").encode("utf-8", "surrogatepass")) + len(
            (self.suffix or "").encode("utf-8", "surrogatepass")
        )


def _text(body: dict, name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if not isinstance(value, str):
        raise RequestError("bad_request", f"'{name}' must be a string (or a list of one string), got {value!r:.60}")
    return value


def parse_body(body: object, modes: dict, vocab_size: int) -> ParsedBody:
    """Checks an OpenAI completions body (nothing is tokenized here)."""
    if not isinstance(body, dict):
        raise RequestError("bad_request", "the body must be a JSON object")
    unsupported = sorted(k for k, ok in NOT_IMPLEMENTED.items() if k in body and body[k] not in ok)
    if unsupported:
        raise RequestError("not_implemented", f"not implemented by this server: {', '.join(unsupported)}", 400)
    mode = body.get("model") or "instant"
    if mode not in modes:
        raise RequestError("unknown_mode", f"model {mode!r} is not served; use one of {sorted(modes)}")
    stream = field(body, "stream", bool, False)
    namespace = field(body, "namespace", str, None)
    default_priority = Priority.EXPERT if mode == "expert" else Priority.INSTANT
    priority = parse_priority(body["priority"]) if body.get("priority") is not None else default_priority
    sampling = parse_sampling({k: body[k] for k in SAMPLING_FIELDS if k in body})
    prompt = body.get("prompt")
    spec = CompleteSpec(f"cmpl-{secrets.token_hex(12)}", [], mode, priority, sampling, namespace, stream)
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], str):
        if body.get("suffix"):
            raise RequestError("bad_request", "a token-id 'prompt' is already a FIM prompt: send no 'suffix'")
        spec.prompt = parse_prompt_ids(prompt, vocab_size)
        return ParsedBody(spec)
    if prompt is None:
        raise RequestError("bad_request", "field 'prompt' is required")
    return ParsedBody(spec, _text(body, "prompt"), _text(body, "suffix"))


def error_body(code: str, message: str) -> dict:
    kind = "authentication_error" if code == "unauthorized" else "invalid_request_error"
    if code in ("backend_error", "cancelled", "internal_error", "unavailable"):
        kind = "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _envelope(job) -> dict:
    return {"id": job.spec.id, "object": "text_completion", "created": int(time.time()), "model": job.spec.mode}


def response_body(job, result: CompletionResult) -> dict:
    t = result.timings
    generated = t.generated_tokens or sum(len(c.token_ids) for c in result.candidates)
    prompt_tokens = t.prompt_tokens or len(job.request.prompt)
    choices = [
        {"text": c.text, "index": i, "logprobs": None, "finish_reason": FINISH_REASON.get(c.finish_reason, "stop")}
        for i, c in enumerate(result.candidates)
    ]
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}
    extension = {
        "candidates": [dataclasses.asdict(c) for c in result.candidates],
        "timings": dataclasses.asdict(t),
        "cancelled": result.cancelled,
    }
    return {**_envelope(job), "choices": choices, "usage": usage, "deepfim": extension}


def text_chunk(job, index: int, text: str, mean_logprob: float) -> dict:
    """A streamed piece; `mean_logprob` (our extension) is per token over the candidate's text so far."""
    choice = {"text": text, "index": index, "logprobs": None, "finish_reason": None, "mean_logprob": mean_logprob}
    return {**_envelope(job), "choices": [choice]}


def finish_chunk(job, result: CompletionResult) -> dict:
    """The last SSE event: empty text with each candidate's finish reason, usage and `deepfim`."""
    body = response_body(job, result)
    for choice in body["choices"]:
        choice["text"] = ""
    return body
