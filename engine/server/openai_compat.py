"""OpenAI `/v1/completions` bodies ⇄ the team server's requests and results.

``prompt`` is the text before the cursor and ``suffix`` the text after it; the server builds
the FIM prompt itself (`build_fim_prompt`) in the order the serving checkpoint was trained
on. ``model`` names a mode (``instant`` by default, ``expert``). Deviation from OpenAI:
``temperature`` defaults to 0 (code completion wants the greedy answer). Unknown fields
are ignored, as OpenAI-compatible servers usually do.
"""

from __future__ import annotations

import secrets
import time

from deepfim.engine.api import CompletionResult, Priority
from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt
from deepfim.engine.server.frames import CompleteSpec, ProtocolError, parse_sampling

FINISH_REASON = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "stop"}


def _text_field(body: dict, name: str, *, required: bool) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise ProtocolError("bad_request", f"'{name}' must be a string (or a list of one string), got {value!r:.60}")
    return value


def completion_spec(service, body: object) -> CompleteSpec:
    """Validates an OpenAI completions body and tokenizes it into a FIM request."""
    if not isinstance(body, dict):
        raise ProtocolError("bad_request", "the body must be a JSON object")
    prefix = _text_field(body, "prompt", required=True)
    suffix = _text_field(body, "suffix", required=False)
    mode = body.get("model") or "instant"
    if mode not in service.fim_orders:
        raise ProtocolError("unknown_mode", f"model {mode!r} is not served; use one of {sorted(service.fim_orders)}")
    stream = body.get("stream", False)
    namespace = body.get("namespace")
    if not isinstance(stream, bool) or not (namespace is None or isinstance(namespace, str)):
        raise ProtocolError("bad_request", "'stream' must be a boolean and 'namespace' a string")
    sampling = {k: body[k] for k in ("temperature", "top_p", "max_tokens", "stop", "n", "seed") if k in body}
    sampling.setdefault("max_tokens", 16)  # OpenAI's default
    order = FimOrder(service.fim_orders[mode][0])
    ids = build_fim_prompt(service.tokenizer, prefix, suffix, order).ids
    return CompleteSpec(
        id=f"cmpl-{secrets.token_hex(12)}",
        prompt=ids,
        mode=mode,
        priority=Priority.EXPERT if mode == "expert" else Priority.INSTANT,
        sampling=parse_sampling(sampling, None),
        namespace=namespace,
        stream=stream,
    )


def error_body(code: str, message: str) -> dict:
    kind = "authentication_error" if code == "unauthorized" else "invalid_request_error"
    if code in ("backend_error", "cancelled"):
        kind = "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _envelope(job) -> dict:
    return {
        "id": job.spec.id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": job.spec.mode,
    }


def response_body(job, result: CompletionResult) -> dict:
    t = result.timings
    generated = t.generated_tokens or sum(len(c.token_ids) for c in result.candidates)
    prompt_tokens = t.prompt_tokens or len(job.request.prompt)
    choices = [
        {
            "text": c.text,
            "index": i,
            "logprobs": None,
            "finish_reason": FINISH_REASON.get(c.finish_reason, "stop"),
        }
        for i, c in enumerate(result.candidates)
    ]
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": generated,
        "total_tokens": prompt_tokens + generated,
    }
    return {**_envelope(job), "choices": choices, "usage": usage}


def text_chunk(job, index: int, text: str) -> dict:
    return {
        **_envelope(job),
        "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": None}],
    }


def finish_chunk(job, result: CompletionResult) -> dict:
    """The last SSE event: empty text with each candidate's finish reason, plus usage."""
    body = response_body(job, result)
    for choice in body["choices"]:
        choice["text"] = ""
    return body
