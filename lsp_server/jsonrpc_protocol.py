"""pygls protocol adjustments for DeepFIM.

- Malformed parameters: pygls fails to deserialize such a message before it knows which
  handler to call, logs it and sends no response, so the client would wait forever for
  that request. Here a malformed *request* is answered with a JSON-RPC InvalidParams error
  naming the method; a malformed notification is logged and dropped.
- Document sync: the server keeps its own buffers (`documents.py`), so pygls' built-in
  didOpen/didChange/didClose bookkeeping is skipped and only the server's handlers run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cattrs import ClassValidationError, transform_error
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol, lsp_method

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
    cause = exc.__cause__
    if isinstance(cause, ClassValidationError):
        return "; ".join(transform_error(cause))
    return str(cause or exc)


class DeepFimProtocol(LanguageServerProtocol):
    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and isinstance(data.get("method"), str):
                return MalformedMessage(data["method"], data.get("id"), _detail(exc))
            raise

    def handle_message(self, message):
        if isinstance(message, MalformedMessage):
            logger.warning("malformed %s: %s", message.method, message.detail)
            if message.id is not None:
                error = types.ResponseError(
                    code=types.ErrorCodes.InvalidParams,
                    message=f"invalid params for {message.method}: {message.detail}",
                )
                self._send_response(message.id, error=error)
            return
        super().handle_message(message)

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
