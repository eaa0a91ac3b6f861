"""JSON-RPC 2.0 envelope checks (https://www.jsonrpc.org/specification), before any LSP typing.

`classify` tells what a decoded JSON value is — request, notification, response — or why it is
an invalid request. What the spec asks for an invalid one: an error response with code -32600
and the request's id when that id could be read (a string or an integer, as LSP allows), else
`null`. A response from the client is never answered, valid or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REQUEST = "request"
NOTIFICATION = "notification"
RESPONSE = "response"
INVALID = "invalid"  # answered with -32600
BAD_RESPONSE = "bad-response"  # logged only


@dataclass(frozen=True)
class Envelope:
    kind: str
    reply_id: int | str | None = None  # the id to answer with (None: JSON null)
    method: str | None = None
    problem: str | None = None  # why the message is invalid


def valid_id(value: Any) -> bool:
    """LSP ids are integers or strings (JSON-RPC also allows null, discouraged; LSP does not)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def classify(message: Any) -> Envelope:
    """What `message` (one decoded JSON value, not a batch) is, per JSON-RPC 2.0."""
    if not isinstance(message, dict):
        return Envelope(INVALID, problem=f"a message must be a JSON object, got {_type(message)}")
    msg_id = message.get("id")
    reply_id = msg_id if valid_id(msg_id) else None
    if "method" not in message and ("result" in message or "error" in message):
        return _classify_response(message)
    if message.get("jsonrpc") != "2.0":
        return Envelope(INVALID, reply_id, problem=f'"jsonrpc" must be "2.0", got {_short(message.get("jsonrpc"))}')
    if "method" not in message:
        return Envelope(INVALID, reply_id, problem='no "method" (and no "result" or "error")')
    method = message["method"]
    if not isinstance(method, str):
        return Envelope(INVALID, reply_id, problem=f'"method" must be a string, got {_type(method)}')
    if "id" in message and not valid_id(msg_id):
        return Envelope(INVALID, None, method, f'"id" must be a string or an integer, got {_short(msg_id)}')
    params = message.get("params")
    if params is not None and not isinstance(params, (dict, list)):
        return Envelope(INVALID, reply_id, method, f'"params" must be an object or an array, got {_type(params)}')
    return Envelope(REQUEST if "id" in message else NOTIFICATION, reply_id, method)


def _classify_response(message: dict) -> Envelope:
    msg_id = message.get("id")
    if message.get("jsonrpc") != "2.0":
        return Envelope(BAD_RESPONSE, problem=f'"jsonrpc" must be "2.0", got {_short(message.get("jsonrpc"))}')
    if "result" in message and "error" in message:
        return Envelope(BAD_RESPONSE, problem='a response has "result" or "error", not both')
    if "error" in message:
        error = message["error"]
        code = error.get("code") if isinstance(error, dict) else None
        if not (isinstance(code, int) and not isinstance(code, bool)) or not isinstance(error.get("message"), str):
            return Envelope(BAD_RESPONSE, problem=f'"error" must be {{code: int, message: str}}, got {_short(error)}')
        if msg_id is not None and not valid_id(msg_id):
            return Envelope(BAD_RESPONSE, problem=f'"id" must be a string, an integer or null, got {_short(msg_id)}')
    elif not valid_id(msg_id):
        return Envelope(BAD_RESPONSE, problem=f'"id" must be a string or an integer, got {_short(msg_id)}')
    return Envelope(RESPONSE, msg_id if valid_id(msg_id) else None)


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "an object"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
