"""pygls protocol adjustments for DeepFIM: JSON-RPC 2.0 as the spec says, whatever arrives.

`receive` takes what `framing.FrameReader` produced (the transport in `transport.py` replaces
pygls' own reader loop, which had no length limit and never resynchronized):

- a body that is not JSON → error -32700 (ParseError) with id null; invalid UTF-8 is replaced;
- JSON that is no valid JSON-RPC message (`envelope.classify`) → -32600 (InvalidRequest), with
  the request's id when it can be read; a malformed response from the client is only logged;
- requests before `initialize` → -32002 (ServerNotInitialized), after `shutdown` → -32600;
  notifications then are dropped (except `exit`), as LSP says;
- a message whose params do not fit its LSP type: pygls fails to deserialize it before it
  knows the handler, so here a malformed *request* is answered with -32602 (InvalidParams)
  naming the field; a malformed notification is logged and dropped.

Every problem is logged and reported through `problems` (one status message per kind a
minute, never one per message). Per-message state is released when the message is done:
pygls keeps notification futures in `_request_futures` forever, which grew the server by
hundreds of bytes per keystroke.

Document sync: the server keeps its own buffers (`documents.py`), so pygls' built-in
didOpen/didChange/didClose bookkeeping is skipped and only the server's handlers run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from cattrs import ClassValidationError, transform_error
from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage

from deepfim.lsp_server import envelope, problems
from deepfim.lsp_server.framing import Frame, FramingProblem

logger = logging.getLogger(__name__)


@dataclass
class MalformedMessage:
    """Stands in for a message whose params could not be deserialized."""

    method: str
    id: Any | None
    detail: str
    jsonrpc: str = "2.0"


def _detail(exc: BaseException) -> str:
    """What was wrong, e.g. "invalid value for type, expected int @ $.params.position.line"."""
    if isinstance(exc, ClassValidationError):
        return "; ".join(transform_error(exc))
    return str(exc)


class DeepFimProtocol(LanguageServerProtocol):
    def __init__(self, server, converter) -> None:
        super().__init__(server, converter)
        self.problems = problems.ProblemReporter(self._show_status)
        self.received = 0  # messages (frames) received
        self._initialize_seen = False

    # entry point from the transport -------------------------------------------------------

    def receive(self, item: Frame | FramingProblem) -> None:
        """Handle one framed body, or report a framing problem."""
        if isinstance(item, FramingProblem):
            self.problems.report(problems.FRAMING, f"LSP framing: {item.detail}")
            return
        self.received += 1
        try:
            text = item.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problems.report(problems.TEXT, f"a message was not valid UTF-8 ({exc.reason}); replaced")
            text = item.body.decode("utf-8", errors="replace")
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.problems.report(problems.PARSE, f"a message that is not JSON ({reason}) was ignored")
            self._send_error(None, types.ErrorCodes.ParseError, f"Parse error: {reason}")
            return
        if isinstance(value, list):  # a batch: handled message by message (LSP has no batches)
            if not value:
                self._invalid(envelope.Envelope(envelope.INVALID, problem="empty batch"))
            for element in value:
                self._receive_message(element)
            return
        self._receive_message(value)

    def _receive_message(self, value: Any) -> None:
        env = envelope.classify(value)
        if env.kind == envelope.INVALID:
            self._invalid(env)
            return
        if env.kind == envelope.BAD_RESPONSE:
            self.problems.report(problems.INVALID_REQUEST, f"malformed response ignored: {env.problem}")
            return
        if env.kind == envelope.RESPONSE and env.reply_id not in self._result_types:
            logger.info("response to an unknown request %r ignored", env.reply_id)
            return
        if not self._admit(env):
            return
        try:
            message = self.structure_message(value)
            if env.method == types.INITIALIZE and not isinstance(message, MalformedMessage):
                self._initialize_seen = True
            self.handle_message(message)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # one message must never take the server down
            logger.exception("handling %s %r failed", env.kind, env.method)
            self.problems.report(problems.SERVER, f"handling {env.method or 'a response'} failed: {exc}")
            if env.kind == envelope.REQUEST:
                self._send_error(env.reply_id, types.ErrorCodes.InternalError, f"{env.method} failed: {exc}")

    def _admit(self, env: envelope.Envelope) -> bool:
        """LSP's lifecycle: nothing but `initialize` (and `exit`) before it, nothing after `shutdown`."""
        if env.method == types.EXIT or env.kind == envelope.RESPONSE:
            return True
        if env.method == types.INITIALIZE and env.kind == envelope.REQUEST:
            if self._initialize_seen:
                self._invalid(envelope.Envelope(envelope.INVALID, env.reply_id, problem="initialize was already sent"))
                return False
            return True
        if self._shutdown or not self._initialize_seen:
            why = "the server is shutting down" if self._shutdown else "the server is not initialized yet"
            logger.info("%s %r dropped: %s", env.kind, env.method, why)
            if env.kind == envelope.REQUEST:
                code = types.ErrorCodes.InvalidRequest if self._shutdown else types.ErrorCodes.ServerNotInitialized
                self._send_error(env.reply_id, code, f"{env.method}: {why}")
            return False
        return True

    def _invalid(self, env: envelope.Envelope) -> None:
        self.problems.report(problems.INVALID_REQUEST, f"invalid JSON-RPC message: {env.problem}")
        self._send_error(env.reply_id, types.ErrorCodes.InvalidRequest, f"Invalid Request: {env.problem}")

    def _send_error(self, msg_id: int | str | None, code: int, message: str) -> None:
        # a plain dict: the typed ResponseErrorMessage would drop "id": null when serialized
        error = {"code": int(code), "message": message}
        self._send_data({"jsonrpc": self.VERSION, "id": msg_id, "error": error})

    def _show_status(self, message: str) -> None:
        params = types.ShowMessageParams(type=types.MessageType.Warning, message=message)
        self.notify(types.WINDOW_SHOW_MESSAGE, params)

    def stats(self) -> dict:
        """For `deepfim/status`: traffic and problems seen, and what is still in flight."""
        return {"messages": self.received, "in_flight": len(self._request_futures), "problems": self.problems.counts}

    # pygls hooks --------------------------------------------------------------------------

    def structure_message(self, data: dict[str, Any]):
        """The typed message (pygls' choice of type); a message whose params do not fit its
        type becomes a `MalformedMessage`. Unlike pygls', logs no traceback per bad message."""
        if "id" in data and "error" in data:
            message_type = types.ResponseErrorMessage
        elif "method" in data:
            message_type = self.get_message_type(data["method"])
            if message_type is None:
                message_type = JsonRPCRequestMessage if "id" in data else JsonRPCNotification
        else:
            message_type = self._result_types.pop(data["id"], None) or JsonRPCResponseMessage
        try:
            return self._converter.structure(data, message_type)
        except Exception as exc:
            if isinstance(data.get("method"), str):
                return MalformedMessage(data["method"], data.get("id"), _detail(exc))
            raise JsonRpcInternalError(f"cannot read the message: {_detail(exc)}") from exc

    def handle_message(self, message):
        if isinstance(message, MalformedMessage):
            self.problems.report(problems.INVALID_PARAMS, f"malformed {message.method}: {message.detail}")
            if message.id is not None:
                error = types.ResponseError(
                    code=types.ErrorCodes.InvalidParams,
                    message=f"invalid params for {message.method}: {message.detail}",
                )
                self._send_response(message.id, error=error)
            return
        super().handle_message(message)

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        """As pygls', but the message's future is forgotten once it is done (pygls keeps
        those of notifications and of generator steps forever)."""

        def done(future, callback=callback) -> None:
            try:
                callback(future)
            finally:
                if self._request_futures.get(msg_id) is future:
                    del self._request_futures[msg_id]

        super()._execute_handler(msg_id, handler, done, args, kwargs)

    def _handle_cancel_notification(self, msg_id) -> None:
        future = self._request_futures.pop(msg_id, None) if envelope.valid_id(msg_id) else None
        if future is None:
            logger.debug("$/cancelRequest for %r, which is not in flight", msg_id)
        elif future.cancel():
            logger.info("cancelled request %r", msg_id)

    def _user_handler(self, method: str, params: Any):
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_CLOSE, params)
