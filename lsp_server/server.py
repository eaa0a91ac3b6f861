"""The DeepFIM language server: state and the completion flow behind the LSP handlers.

`DeepFimServer` holds the open documents, settings, the backend (loaded in the background with
`$/progress`), one `ContextSource` per workspace folder, the typing-through cache and local
statistics. `complete_at` is what `textDocument/inlineCompletion` and the
`textDocument/completion` fallback call:

    typing-through cache hit → answer at once
    the user typed what the model call in flight has streamed → join it (`runs.py`)
    otherwise: supersede that call (its decode stops) → debounce (automatic triggers)
    → wait for the backend → pipeline → typing-through cache and statistics

The handlers themselves are registered in `features.py`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types
from pygls.exceptions import FeatureRequestError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from deepfim import __version__
from deepfim.engine.api import Mode
from deepfim.engine.backends import BackendFactory, make_backend
from deepfim.kernels import cbuild
from deepfim.lsp_server import problems, startup_gc
from deepfim.lsp_server.backend_session import BackendSession, spec_for
from deepfim.lsp_server.context_source import ContextSource, PackedContext
from deepfim.lsp_server.copy_prefill import CopyPrefiller
from deepfim.lsp_server.cursor_prefetch import CursorPrefetcher
from deepfim.lsp_server.documents import Document, DocumentStore, uri_to_path
from deepfim.lsp_server.editor_settings import Settings, parse_settings
from deepfim.lsp_server.jsonrpc_protocol import DeepFimProtocol
from deepfim.lsp_server.modes import preset_for, prompt_spec
from deepfim.lsp_server.pipeline import CompletionInput, CompletionOutcome, CompletionPipeline
from deepfim.lsp_server.positions import ENCODINGS, UTF16
from deepfim.lsp_server.progress import ProgressReporter
from deepfim.lsp_server.request_log import RequestRecord
from deepfim.lsp_server.runs import Anchor, PartialText, Runs
from deepfim.lsp_server.scan_pacing import ScanPacing
from deepfim.lsp_server.stats import AcceptanceStats, LatencyStats, ShownByDeadline
from deepfim.lsp_server.typing_cache import TypingCache, rest_after
from deepfim.lsp_server.warmup import RepositoryWarmer

logger = logging.getLogger(__name__)
# a team server that cannot be reached at start is tried again this often (the last, forever),
# so completions come back within about a second of the server's return
RECONNECT_DELAYS_S = (0.25, 0.5, 1.0)


@dataclass
class Suggestions:
    """Suggestions for one request, best first, sharing one suggestion id."""

    suggestion_id: str
    items: list[str]
    timings: dict


class DeepFimServer(LanguageServer):
    def __init__(self, backend_factory: BackendFactory = make_backend, defaults: Settings | None = None) -> None:
        """`defaults`: the settings before the client sends any (`deepfim lsp --device`)."""
        super().__init__(
            "deepfim",
            __version__,
            protocol_cls=DeepFimProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.backend_factory = backend_factory
        self.documents = DocumentStore(on_problem=self.protocol.problems.report)
        self.defaults = defaults or Settings()
        self.settings = self.defaults
        self.mode = self.settings.mode
        self.session: BackendSession | None = None
        self.backend_ready = asyncio.Event()
        self.sources: dict[Path, ContextSource] = {}
        self.loose_files = ContextSource(None)
        self.pipeline = CompletionPipeline()
        self.typing_cache = TypingCache()
        self.latency = LatencyStats()
        self.acceptance = AcceptanceStats()
        self.shown_by_deadline = ShownByDeadline()
        self.last_error: str | None = None
        self.backend_trouble = False  # a failure was reported to the editor; quiet until it recovers
        self._load_generation = 0
        self.pending_messages: list[str] = []
        self.runs: Runs[Suggestions | None] = Runs()  # model calls in flight per (uri, surface)
        self._dirty: dict[str, str] = {}  # uri -> "opened" | "edited" | "closed", for the context
        self._ids = itertools.count(1)
        self._background: set[asyncio.Task] = set()
        self.warmer = RepositoryWarmer(self)
        self.scan_pacing = ScanPacing()  # index scans wait for the engine and for completions
        self.copies = CopyPrefiller(self)
        self.cursors = CursorPrefetcher(self)
        self._copy_pending: dict[Path, set[Path]] = {}  # source root -> documents edited since their copy
        self._log_handler: logging.Handler | None = None

    def report_server_error(self, error: Exception, source) -> None:
        """Errors outside a request's own answer: logged, and at most one status message per
        minute (pygls' default pops up a message for each)."""
        if source is not FeatureRequestError:  # a request's error is in its response already
            self.protocol.problems.report(problems.SERVER, f"{type(error).__name__}: {error}")

    # settings -------------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        caps = getattr(self.protocol, "server_capabilities", None)  # set once initialized
        encoding = caps.position_encoding if caps is not None else None
        return encoding if encoding in ENCODINGS else UTF16

    def apply_settings(self, raw, *, initial: bool = False) -> bool:
        """Validate and apply settings; returns whether the backend must be rebuilt."""
        settings, problems = parse_settings(raw, self.defaults if initial else self.settings)
        self.pending_messages.extend(problems)
        old_spec = spec_for(self.settings)
        if initial or settings.mode != self.settings.mode:
            self.mode = settings.mode
        self.settings = settings
        self._configure_log_file(settings.log_file)
        logging.getLogger("deepfim").setLevel(settings.log_level or logging.NOTSET)  # None: as the command line says
        return spec_for(settings) != old_spec

    def flush_messages(self) -> None:
        for message in self.pending_messages:
            logger.warning("%s", message)
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=message))
        self.pending_messages.clear()

    def _configure_log_file(self, path: str | None) -> None:
        root = logging.getLogger("deepfim")
        current = getattr(self._log_handler, "baseFilename", None)
        if path is not None and current == str(Path(path).expanduser().resolve()):
            return
        if self._log_handler is not None:
            root.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if path:
            try:
                handler = logging.FileHandler(Path(path).expanduser(), encoding="utf-8")
            except OSError as exc:
                self.pending_messages.append(f"deepfim.logFile: cannot open {path!r} ({exc}); logging to stderr")
                return
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)
            self._log_handler = handler

    # background work ------------------------------------------------------------------

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _load_session(self, spec) -> BackendSession:
        try:
            return await asyncio.to_thread(BackendSession.load, spec, self.backend_factory)
        finally:
            startup_gc.resume()  # the start's load is over, loaded or not (lsp_server/startup_gc.py)

    async def load_backend(self) -> None:
        """(Re)build the backend off the event loop, with `$/progress`. A team server that cannot
        be reached is tried again with back-off until it answers or the settings change;
        completions answer empty meanwhile, and the editor hears of it once."""
        self._load_generation += 1
        generation = self._load_generation
        self.backend_ready.clear()
        progress = ProgressReporter(self, "DeepFIM: loading model")
        spec = spec_for(self.settings)
        progress.begin(", ".join(sorted(set(spec.summary().values()))))
        old, self.session = self.session, None
        if old is not None:
            self.spawn(asyncio.to_thread(old.close))
        attempt = 0
        while generation == self._load_generation:
            try:
                session = await self._load_session(spec)
            except Exception as exc:
                if attempt == 0:
                    logger.exception("starting the engine failed")
                self.backend_failed(f"could not start the engine: {exc}", error=True)
                self.backend_ready.set()
                if not spec.server:
                    progress.end("model failed to load")
                    return
                if attempt == 0:
                    progress.end("team server unreachable; retrying")
                await asyncio.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
                attempt += 1
                continue
            if generation != self._load_generation:  # the settings changed meanwhile
                await asyncio.to_thread(session.close)
                return
            self.session = session
            self.backend_recovered()
            if attempt == 0:
                progress.end("model ready")
            self.backend_ready.set()
            for source in self.sources.values():
                self.spawn(self.warmer.warm(source))
            return

    def backend_failed(self, message: str, error: bool = False) -> None:
        """Records a backend failure; the first of an outage is shown to the user, once."""
        self.last_error = message
        if self.backend_trouble:
            logger.debug("%s", message)
            return
        self.backend_trouble = True
        logger.warning("%s", message)
        kind = types.MessageType.Error if error else types.MessageType.Warning
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"DeepFIM: {message}"))

    def backend_recovered(self) -> None:
        if self.backend_trouble:
            logger.info("the backend answers again")
        self.backend_trouble = False

    def add_folder(self, root: Path) -> None:
        if root in self.sources:
            return
        source = ContextSource(root, parts_on_demand=False)
        self.sources[root] = source
        if source.indexed:
            self.spawn(self._scan(source))

    def remove_folder(self, root: Path) -> None:
        source = self.sources.pop(root, None)
        if source is not None:
            self.pipeline.executor.submit(source.close)

    async def _scan(self, source: ContextSource) -> None:
        await self.backend_ready.wait()  # beside the engine's import, both take twice as long (scan_pacing.py)
        progress = ProgressReporter(self, f"DeepFIM: indexing {source.root.name if source.root else ''}")
        progress.begin()

        def on_progress(done: int, total: int) -> None:
            percent = int(100 * done / total) if total else None
            progress.report_threadsafe(f"{done}/{total} files" if total else "indexing", percent)

        stats = await asyncio.to_thread(source.scan, on_progress, self.scan_pacing.wait_turn)
        startup_gc.settle()  # the index lives for the session: out of later full collections
        progress.end(f"{stats.get('files', 0)} files indexed" if source.ready else "indexing failed")
        if source.last_error:
            self.last_error = source.last_error
        for doc in self.documents:  # buffers opened while indexing
            if doc.path is not None and source.contains(doc.path):
                self._dirty.setdefault(doc.uri, "opened")
        if self.backend_ready.is_set() and self.session is not None:
            self.spawn(self.warmer.warm(source))

    # documents and context ------------------------------------------------------------

    def source_for(self, path: Path | None) -> ContextSource:
        if path is not None:
            roots = [root for root, source in self.sources.items() if source.contains(path)]
            if roots:
                return self.sources[max(roots, key=lambda r: len(r.parts))]
        return self.loose_files

    def note_document(self, uri: str, event: str) -> None:
        """Remember a buffer event; the context hears of it before the next pack."""
        if event == "closed":
            self.copies.closed(uri)
            self.typing_cache.forget(uri)
            self.runs.supersede_document(uri)
        doc = self.documents.get(uri)
        path = doc.path if doc is not None else uri_to_path(uri)
        source = self.source_for(path)
        self.warmer.touch(source if event == "edited" else None)
        if event == "edited" and path is not None and source.root is not None:
            self._copy_pending.setdefault(source.root, set()).add(path)
        if self._dirty.get(uri) != "opened" or event == "closed":
            self._dirty[uri] = event

    def _flush_context(self) -> None:
        """Queue buffer updates on the context thread, ahead of the next pack."""
        if not self._dirty:
            return
        updates = []
        for uri, event in self._dirty.items():
            doc = self.documents.get(uri)
            path = doc.path if doc is not None else uri_to_path(uri)
            if path is not None:
                updates.append((self.source_for(path), path, event, doc.text if doc is not None else None))
        self._dirty.clear()

        def apply() -> None:
            for source, path, event, text in updates:
                try:
                    source.update_buffer(path, text)
                    if event == "opened":
                        source.note_opened(path)
                    elif event == "edited":
                        source.note_edited(path)
                except Exception:
                    logger.exception("context update failed for %s", path)

        self.pipeline.executor.submit(apply)

    async def pack_prompt(self, session: BackendSession, path: Path | None, prefix: str, suffix: str,
                          mode: str) -> PackedContext:  # fmt: skip
        """The prompt a completion in `mode` at `prefix`|`suffix` of `path` packs now, on the
        context thread (before the rule that leaves out a copy the engine does not hold)."""
        self._flush_context()
        spec = prompt_spec(preset_for(mode, self.settings), session.profile(mode))
        loop = asyncio.get_running_loop()
        source = self.source_for(path)
        return await loop.run_in_executor(
            self.pipeline.executor, source.pack, session.tokenizer, path, prefix, suffix, spec
        )

    def prefill_source(self, doc: Document | None) -> ContextSource | None:
        """The context source of a background prefill for `doc` (its copy, where the cursor
        rests), or None: no engine or document, completions off, a secret file, or a workspace
        whose repository part is not served yet (the first request after it asks for as much)."""
        if self.session is None or doc is None or doc.path is None or not self.settings.enabled:
            return None
        source = self.source_for(doc.path)
        if source.is_private(doc.path) or (source.indexed and source.served is None):
            return None
        return source

    async def prompt_at(self, uri: str, position: types.Position, mode: str) -> dict:
        """The prompt a completion at `position` would send, without calling the model
        (`deepfim/prompt`; what `deepfim context` shows from the command line)."""
        doc = self.documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"{uri} is not open")
        if not self.backend_ready.is_set():
            await self.backend_ready.wait()
        if self.session is None:
            return {"ids": [], "segments": [], "error": self.last_error}
        offset = doc.offset_at(position, self.encoding)
        packed = await self.pack_prompt(self.session, doc.path, doc.text[:offset], doc.text[offset:], mode)
        if mode == Mode.INSTANT and not self.copies.holds(uri, packed.built):
            packed = packed.without_copy()  # what an automatic request sends now
        segments = [
            {"kind": s.kind, "start": s.start, "end": s.end, "path": s.path, "reason": s.reason}
            for s in packed.prompt.segments
        ]
        return {"ids": packed.prompt.ids, "segments": segments, "source": packed.source}

    async def snapshot_copies(self, source: ContextSource) -> None:
        """Fix the copies of the documents edited since their last copy (the user paused)."""
        paths = self._copy_pending.pop(source.root, set()) if source.root is not None else set()
        if not paths:
            return
        self._flush_context()  # the buffers' latest text first, on the same thread
        loop = asyncio.get_running_loop()
        for path in sorted(paths):
            await loop.run_in_executor(self.pipeline.executor, source.snapshot_copy, path)

    # completion -----------------------------------------------------------------------

    async def complete_at(
        self, uri: str, position: types.Position, invoked: bool, surface: str = "inline"
    ) -> Suggestions | None:
        """Suggestions at `position` in `uri`; None when there is nothing to show.

        Answered, in order of preference, from the typing-through cache, by joining the model
        call in flight for this document if the user typed what it has streamed so far, or by
        a new model call that supersedes the one in flight (latest wins; a superseded request
        returns None). Documents are separate per `surface` ("inline" or "completion").

        Raises:
            asyncio.CancelledError: the client cancelled the request.
        """
        mode = "expert" if invoked else self.mode
        record = RequestRecord(uri, position.line, position.character, surface, invoked, mode)
        try:
            with self.scan_pacing.completion():
                served = await self._complete_at(uri, position, invoked, surface, record)
        except BaseException as exc:
            record.log_failure(exc)
            raise
        record.log_answer(served.items if served is not None else None)
        return served

    async def _complete_at(
        self, uri: str, position: types.Position, invoked: bool, surface: str, record: RequestRecord
    ) -> Suggestions | None:
        key = (uri, surface)
        started = time.perf_counter()
        self.warmer.touch()
        doc = self.documents.get(uri)
        if doc is None or not self.settings.enabled:
            record.nothing("document not open" if doc is None else "completions disabled")
            return None
        offset = doc.offset_at(position, self.encoding)
        prefix, suffix = doc.text[:offset], doc.text[offset:]
        if not invoked:
            hit = self.typing_cache.lookup(uri, prefix, suffix)
            if hit is not None:
                self.runs.supersede(key)  # a call started since is stale now
                extra = {"cached": True, "model_call": False}
                record.answered_by = "typing-through cache"
                return self._served_again(hit.suggestion_id, hit.remaining, extra, started, record)
            joinable = self.runs.joinable(key, prefix, suffix)
            if joinable is not None:
                run, typed = joinable
                served = await self.runs.wait(run)
                rest = rest_after(served.items[0], typed) if served is not None else None
                if rest is not None:
                    extra = {**served.timings, "joined": True, "model_call": False}
                    record.answered_by = "model call in flight"
                    return self._served_again(served.suggestion_id, rest, extra, started, record)
        run = self.runs.start(
            key,
            Anchor.at(prefix, suffix),
            lambda partial: self._complete_with_model(doc, prefix, suffix, invoked, started, partial, record, key),
        )
        served = await self.runs.wait(run)
        if served is None and run.superseded:
            record.nothing("superseded by a newer request")
        return served

    def _served_again(
        self, suggestion_id: str, rest: str, timings: dict, started: float, record: RequestRecord
    ) -> Suggestions:
        """The rest of an earlier suggestion, with this request's own latency."""
        timings = {**timings, "total_ms": round((time.perf_counter() - started) * 1000, 2)}
        record.timings = timings
        self.latency.record({"total_ms": timings["total_ms"]})
        return Suggestions(suggestion_id, [rest], timings)

    async def _complete_with_model(
        self,
        doc: Document,
        prefix: str,
        suffix: str,
        invoked: bool,
        started: float,
        partial: PartialText,
        record: RequestRecord,
        key: tuple[str, str],
    ) -> Suggestions | None:
        mode = "expert" if invoked else self.mode
        preset = preset_for(mode, self.settings)
        debounce = self.settings.debounce_ms / 1000 if preset.debounce else 0.0
        # only automatic instant suggestions: an explicit request asked for the whole of it
        early = mode == Mode.INSTANT and not invoked and self.settings.show_by_ms > 0
        show_by = self.settings.show_by_ms / 1000 if early else None
        if not self.backend_ready.is_set():
            await self.backend_ready.wait()
        if self.session is None:
            record.nothing(f"no engine ({self.last_error or 'not loaded'})")
            return None
        self._flush_context()
        source = self.source_for(doc.path)
        held = functools.partial(self.copies.holds, doc.uri)
        wanted = functools.partial(self.copies.may_hold, doc.uri)
        inp = CompletionInput(doc.path, doc.language_id, prefix, suffix, invoked, held, wanted)
        try:
            outcome = await self.pipeline.complete(
                inp, preset, self.session, source, debounce, partial, show_by_s=show_by
            )
        except Exception as exc:  # the backend failed (e.g. the team server is down): nothing to show
            self.backend_failed(f"completion failed: {exc}")
            return None
        finally:
            cbuild.release_later()  # a first suggestion is out: compile what it did without
        if outcome.timings.model_call:
            self.backend_recovered()
        timings = outcome.timings.as_dict()
        timings["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
        self.latency.record(timings)
        record.timings = timings
        if not outcome.items:
            record.nothing(outcome.reason)
            return None
        suggestion_id = f"s{next(self._ids)}"
        anchor = Anchor.at(prefix, suffix)
        self.typing_cache.store(doc.uri, anchor, outcome.items[0], suggestion_id)
        self.acceptance.on_shown(suggestion_id, len(outcome.items[0]))
        if outcome.rest is not None:
            record.shown_by_deadline = True
            self.shown_by_deadline.shown += 1
            self.runs.go_on(key, anchor, partial, self._rest_of(doc.uri, suggestion_id, outcome))
        return Suggestions(suggestion_id, outcome.items, timings)

    async def _rest_of(self, uri: str, suggestion_id: str, shown: CompletionOutcome) -> Suggestions | None:
        """The whole of a suggestion shown by the deadline: kept where typing through or
        accepting what was shown finds it (the typing-through cache), and handed to a request
        that joins the call while it is still being written."""
        try:
            whole = await shown.rest
        except BaseException:
            self.shown_by_deadline.dropped += 1
            raise
        if whole is None or not whole.items or not whole.items[0].startswith(shown.items[0]):
            self.shown_by_deadline.dropped += 1
            return None  # the lines shown stay what there is
        self.shown_by_deadline.completed += 1
        self.typing_cache.extend(uri, suggestion_id, whole.items[0])
        timings = whole.timings.as_dict()
        logger.debug("rest of %s written: %d characters more, decode %.1f ms in all", suggestion_id,
                     len(whole.items[0]) - len(shown.items[0]), timings["decode_ms"])  # fmt: skip
        return Suggestions(suggestion_id, [whole.items[0]], timings)

    # status and shutdown ----------------------------------------------------------------

    def status(self) -> dict:
        sources = [*self.sources.values()]
        index = {"files": 0, "definitions": 0, "bytes": 0, "ready": all(s.ready or not s.indexed for s in sources)}
        for source in sources:
            stats = source.stats()
            for key in ("files", "definitions", "bytes"):
                index[key] += int(stats.get(key) or 0)
        session = self.session
        return {
            "mode": self.mode,
            "enabled": self.settings.enabled,
            "models": (session.spec if session else spec_for(self.settings)).summary(),
            "loading": not self.backend_ready.is_set(),
            "index": index,
            "cache": self.typing_cache.stats(),
            "engine": session.stats() if session else {},
            "repository": self.warmer.status(),
            "copies": self.copies.status(),
            "cursor": self.cursors.status(),
            "latency_ms": self.latency.summary(),
            "acceptance": self.acceptance.summary(),
            "shown_by_deadline": self.shown_by_deadline.as_dict(),
            "server": session.server() if session else (self.settings.server or "in-process"),
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Release the backend and watchers (idempotent); the process may then exit."""
        session, self.session = self.session, None
        for source in [*self.sources.values(), self.loose_files]:
            source.close()
        if session is not None:
            session.close()
        self.pipeline.executor.shutdown(wait=False, cancel_futures=True)

    async def shutdown_all(self) -> None:
        self.runs.supersede_all()
        for task in list(self._background):
            task.cancel()
        session, self.session = self.session, None
        for source in [*self.sources.values(), self.loose_files]:
            source.close()
        if session is not None:
            await asyncio.to_thread(session.close)
