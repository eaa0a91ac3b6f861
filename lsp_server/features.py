"""LSP handlers of the DeepFIM server (docs/protocol.md): lifecycle, document sync,
configuration, `textDocument/inlineCompletion`, the `textDocument/completion` fallback
and the `deepfim/*` custom requests."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from deepfim.lsp_server import problems
from deepfim.lsp_server.documents import uri_to_path
from deepfim.lsp_server.editor_settings import MODES, settings_section
from deepfim.lsp_server.server import DeepFimServer, Suggestions

logger = logging.getLogger(__name__)

ACCEPT_COMMAND = "deepfim.accept"


def params_dict(params: Any) -> dict:
    """Custom-request params as a dict (pygls hands them over as namedtuples)."""
    if params is None:
        return {}
    if isinstance(params, dict):
        return params
    if hasattr(params, "_asdict"):
        return {k: params_dict(v) if hasattr(v, "_asdict") else v for k, v in params._asdict().items()}
    raise JsonRpcInvalidParams(f"params must be an object, got {type(params).__name__}")


def _command(served: Suggestions, index: int) -> types.Command:
    args = {"id": served.suggestion_id, "index": index, "timings": served.timings}
    return types.Command(title="DeepFIM: accepted", command=ACCEPT_COMMAND, arguments=[args])


async def _complete(ls: DeepFimServer, uri: str, position: types.Position, invoked: bool, surface: str):
    """`complete_at`, except that a failure (an engine error, a model whose logits turn NaN)
    becomes "nothing to show": `deepfim/status` `last_error` says why, the log has the
    details and the editor gets one status message a minute, not an error per keystroke."""
    try:
        return await ls.complete_at(uri, position, invoked, surface)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.warning("completion in %s failed: %s", uri, exc)  # the engine logged the traceback
        ls.last_error = f"completion failed: {exc}"
        ls.protocol.problems.report(problems.COMPLETION, ls.last_error, logging.DEBUG)
        return None


def _folders(params: types.InitializeParams) -> list[Path]:
    uris = [f.uri for f in params.workspace_folders or []]
    if not uris and params.root_uri:
        uris = [params.root_uri]
    paths = [uri_to_path(uri) for uri in uris]
    if not uris and params.root_path:
        paths = [Path(params.root_path)]
    return [p.resolve() for p in paths if p is not None and p.is_dir()]


def register(server: DeepFimServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: DeepFimServer, params: types.InitializeParams) -> None:
        ls.apply_settings(params.initialization_options, initial=True)
        for folder in _folders(params):
            ls.add_folder(folder)

    @server.feature(types.INITIALIZED)
    def initialized(ls: DeepFimServer, params: types.InitializedParams) -> None:
        ls.flush_messages()
        ls.spawn(ls.load_backend())
        ls.spawn(ls.warmer.run())

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: DeepFimServer, params: None) -> None:
        await ls.shutdown_all()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: DeepFimServer, params: types.DidChangeConfigurationParams) -> None:
        if ls.apply_settings(settings_section(params.settings)):
            ls.spawn(ls.load_backend())
        ls.flush_messages()

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_folders(ls: DeepFimServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        for folder in params.event.removed:
            if (path := uri_to_path(folder.uri)) is not None:
                ls.remove_folder(path.resolve())
        for folder in params.event.added:
            if (path := uri_to_path(folder.uri)) is not None and path.is_dir():
                ls.add_folder(path.resolve())

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: DeepFimServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.documents.open(params.text_document)
        ls.note_document(params.text_document.uri, "opened")
        ls.copies.opened(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: DeepFimServer, params: types.DidChangeTextDocumentParams) -> None:
        if ls.documents.change(params, ls.encoding) is not None:
            ls.note_document(params.text_document.uri, "edited")

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DeepFimServer, params: types.DidCloseTextDocumentParams) -> None:
        if ls.documents.close(params.text_document.uri) is not None:
            ls.note_document(params.text_document.uri, "closed")

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: DeepFimServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.note_document(params.text_document.uri, "edited")

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: DeepFimServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        served = await _complete(ls, params.text_document.uri, params.position, invoked, "inline")
        if served is None:
            return types.InlineCompletionList(items=[])
        here = types.Range(start=params.position, end=params.position)
        return types.InlineCompletionList(
            items=[
                types.InlineCompletionItem(insert_text=text, range=here, command=_command(served, i))
                for i, text in enumerate(served.items)
            ]
        )

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))
    async def completion(ls: DeepFimServer, params: types.CompletionParams) -> types.CompletionList:
        served = await _complete(ls, params.text_document.uri, params.position, False, "completion")
        if served is None:
            return types.CompletionList(is_incomplete=True, items=[])
        text = served.items[0]
        label = next((line.strip() for line in text.splitlines() if line.strip()), text)[:60]
        item = types.CompletionItem(
            label=label,
            kind=types.CompletionItemKind.Text,
            detail="DeepFIM",
            text_edit=types.TextEdit(range=types.Range(start=params.position, end=params.position), new_text=text),
            insert_text_format=types.InsertTextFormat.PlainText,
            sort_text="0",
            data={"id": served.suggestion_id, "timings": served.timings},
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.command(ACCEPT_COMMAND)
    def accept_command(ls: DeepFimServer, *args: Any) -> None:
        for arg in args:
            arg = params_dict(arg)
            if "id" in arg:
                ls.acceptance.on_accept(str(arg["id"]), None)

    @server.feature("deepfim/status")
    def status(ls: DeepFimServer, params: Any) -> dict:
        return {**ls.status(), "protocol": ls.protocol.stats()}

    @server.feature("deepfim/prompt")
    async def prompt(ls: DeepFimServer, params: Any) -> dict:
        args = params_dict(params)
        doc, pos = args.get("textDocument") or {}, args.get("position") or {}
        mode = args.get("mode", ls.mode)
        line, character = pos.get("line"), pos.get("character")
        if (
            not isinstance(doc, dict)
            or not isinstance(line, int)
            or not isinstance(character, int)
            or mode not in MODES
        ):
            raise JsonRpcInvalidParams(
                f"expected {{textDocument: {{uri}}, position: {{line, character}}, mode?}}, got {args!r}"
            )
        return await ls.prompt_at(str(doc.get("uri")), types.Position(line=line, character=character), mode)

    @server.feature("deepfim/cursor")
    def cursor(ls: DeepFimServer, params: Any) -> None:
        args = params_dict(params)
        doc, pos = args.get("textDocument") or {}, args.get("position") or {}
        line, character = pos.get("line"), pos.get("character")
        if not isinstance(doc, dict) or not isinstance(line, int) or not isinstance(character, int):
            raise JsonRpcInvalidParams(
                f"expected {{textDocument: {{uri}}, position: {{line, character}}}}, got {args!r}"
            )
        ls.cursors.rested(str(doc.get("uri")), line, character)

    @server.feature("deepfim/setMode")
    def set_mode(ls: DeepFimServer, params: Any) -> dict:
        mode = params_dict(params).get("mode")
        if mode not in MODES:
            raise JsonRpcInvalidParams(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        ls.mode = mode
        return {"mode": mode}

    @server.feature("deepfim/setEnabled")
    def set_enabled(ls: DeepFimServer, params: Any) -> dict:
        enabled = params_dict(params).get("enabled")
        if not isinstance(enabled, bool):
            raise JsonRpcInvalidParams(f"enabled must be true or false, got {enabled!r}")
        ls.apply_settings({"enabled": enabled})
        return {"enabled": enabled}

    @server.feature("deepfim/accept")
    def accept(ls: DeepFimServer, params: Any) -> None:
        args = params_dict(params)
        chars = args.get("acceptedChars")
        if "id" not in args or (chars is not None and (not isinstance(chars, int) or isinstance(chars, bool))):
            raise JsonRpcInvalidParams(f"expected {{id, acceptedChars?: int}}, got {args!r}")
        ls.acceptance.on_accept(str(args["id"]), chars)

    @server.feature("deepfim/reject")
    def reject(ls: DeepFimServer, params: Any) -> None:
        args = params_dict(params)
        if "id" not in args:
            raise JsonRpcInvalidParams(f"expected {{id}}, got {args!r}")
        ls.acceptance.on_reject(str(args["id"]))


def create_server(**kwargs: Any) -> DeepFimServer:
    """A server with all handlers registered (`kwargs` go to `DeepFimServer`)."""
    server = DeepFimServer(**kwargs)
    register(server)
    return server
