"""Prefills an opened file's copy in the background, before its first keystroke.

A file the repository part does not show (beyond the part's budget, or edited this session)
comes into its prompts as a copy right after the part (`context/prompt_builder.py`): up to
the `cursor_file` budget (3,696 tokens by default), the same wherever the cursor is. In a
repository larger than the part that is most files, and their first suggestion prefilled the
copy with its window (1-2 s on a small CPU). Here the copy is prefilled when the file opens,
and again when its copy or the part under it is renewed, at background priority (a keystroke
preempts it within one chunk), so a first suggestion prefills its window only.

It waits `OPEN_DELAY_S` first: a completion asked for by then prefills the copy itself (a
prefill beside it would only take turns with it), and the files an editor restores at start
wait for the part, after which the warmer hands them here (`after_warm`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from deepfim.engine.api import CompletionRequest, Priority, SamplingParams
from deepfim.lsp_server.modes import preset_for, prompt_spec

logger = logging.getLogger(__name__)

OPEN_DELAY_S = 0.15
# After the part is renewed every copy's position changes; only the files used last are
# prefilled again (each is up to a few thousand tokens of background work).
AFTER_WARM_FILES = 2


@dataclass
class CopyStats:
    """What `deepfim/status` says about the copies prefilled so far."""

    prefilled: int = 0  # copies the engine now holds
    tokens: int = 0  # of those copies (the prompt up to each copy's end)
    skipped: int = 0  # opens that needed none (the part shows the file, it is small) or were asked first
    last_ms: float = 0.0

    def as_dict(self, running: int) -> dict:
        return {"prefilled": self.prefilled, "tokens": self.tokens, "skipped": self.skipped,
                "running": running, "last_ms": round(self.last_ms, 1)}  # fmt: skip


class CopyPrefiller:
    def __init__(self, server) -> None:
        self.server = server
        self.stats = CopyStats()
        self._running: dict[str, asyncio.Task] = {}
        self._asked: set[str] = set()  # documents a completion was asked in since their last schedule
        self._recent: OrderedDict[str, None] = OrderedDict()  # documents, least recently used first

    def opened(self, uri: str) -> None:
        self._use(uri)
        self.schedule(uri)

    def asked(self, uri: str) -> None:
        """A completion in `uri`: it prefills the copy itself."""
        self._use(uri)
        self._asked.add(uri)

    def closed(self, uri: str) -> None:
        self._recent.pop(uri, None)
        self._asked.discard(uri)
        task = self._running.pop(uri, None)
        if task is not None:
            task.cancel()

    def after_warm(self, source) -> None:
        """The source's part is served anew: the copies of its files used last move with it."""
        uris = [u for u in reversed(self._recent) if self._source_of(u) is source][:AFTER_WARM_FILES]
        for uri in uris:
            self.schedule(uri, delay=0.0)

    def status(self) -> dict:
        return self.stats.as_dict(len(self._running))

    def schedule(self, uri: str, delay: float = OPEN_DELAY_S) -> None:
        old = self._running.pop(uri, None)
        if old is not None:
            old.cancel()  # a copy of text or a part that is gone now
        self._asked.discard(uri)
        task = self.server.spawn(self._prefill(uri, delay))
        self._running[uri] = task
        task.add_done_callback(lambda t, u=uri: self._running.pop(u, None) if self._running.get(u) is t else None)

    def _use(self, uri: str) -> None:
        self._recent.pop(uri, None)
        self._recent[uri] = None

    def _source_of(self, uri: str):
        doc = self.server.documents.get(uri)
        return None if doc is None or doc.path is None else self.server.source_for(doc.path)

    async def _prefill(self, uri: str, delay: float) -> None:
        server = self.server
        await asyncio.sleep(delay)
        session, doc = server.session, server.documents.get(uri)
        if session is None or doc is None or doc.path is None or not server.settings.enabled:
            return
        source = server.source_for(doc.path)
        if source.is_private(doc.path) or (source.indexed and source.served is None):
            return  # never completed; or the part is still to come (the warmer calls `after_warm`)
        if uri in self._asked or source.shows(doc.path):
            self.stats.skipped += 1  # its first completion is on it already; the part shows the file
            return
        started = time.perf_counter()
        try:
            server._flush_context()
            preset = preset_for(server.mode, server.settings)
            spec = prompt_spec(preset, session.profile(preset.name))
            loop = asyncio.get_running_loop()
            packed = await loop.run_in_executor(
                server.pipeline.executor, source.pack, session.tokenizer, doc.path, "", doc.text, spec
            )
            built = packed.built
            end = next((s.end for s in built.prompt.segments if s.kind == "cursor_copy"), None)
            if end is None or uri in self._asked:
                self.stats.skipped += 1
                return
            ids = built.prompt.ids[:end]
            request = CompletionRequest(
                ids, SamplingParams(max_tokens=1, speculative=False), priority=Priority.BACKGROUND, mode=preset.name,
                prefill_only=True, anchors=tuple(a for a in built.anchors() if a <= end),
            )  # fmt: skip
            handle = session.backend.submit(request)
            try:
                await asyncio.wrap_future(handle.future)
            except asyncio.CancelledError:
                handle.cancel()
                raise
            self.stats.prefilled += 1
            self.stats.tokens += len(ids)
            self.stats.last_ms = (time.perf_counter() - started) * 1000
            logger.info("copy of %s prefilled: %d tokens (%d of them the copy) in %.0f ms", doc.path, len(ids),
                        end - built.shared_tokens, self.stats.last_ms)  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("prefilling the copy of %s failed", doc.path)
