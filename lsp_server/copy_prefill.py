"""Prefills an opened file's copy in the background; until the engine holds it, automatic
requests leave the copy out.

A file the repository part does not show (beyond the part's budget, or edited this session)
comes into its prompts as a copy right after the part (`context/prompt_builder.py`): up to
the `cursor_file` budget (3,696 tokens by default), the same wherever the cursor is. In a
repository larger than the part that is most files, and their first suggestion prefilled the
copy with its window (1-2 s on a small CPU). Now an automatic request sends its prompt
without a copy the engine does not hold (`holds`), as prompts carry no repository part before
the engine holds one, and the copy is prefilled in the background once the user pauses: no
keystroke waits for a copy. A request that finds its copy missing (the file just opened, the
part renewed under it, the engine dropped it) has it prefilled. Explicit requests (expert
mode) keep their copy.

The prefill runs only while the user pauses (`idle_prefill.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from deepfim.context.prompt_builder import BuiltPrompt
from deepfim.engine.api import CompletionRequest
from deepfim.lsp_server.idle_prefill import prefill_while_idle, wait_idle

logger = logging.getLogger(__name__)

# An editor restoring a session opens many files at once: only the last opened wait for their
# prefill; an older one is prefilled when a request in it finds its copy missing.
MAX_PENDING = 4


@dataclass
class CopyStats:
    """What `deepfim/status` says about the copies of opened files."""

    prefilled: int = 0  # copies prefilled
    tokens: int = 0  # the prompts up to those copies' ends
    not_needed: int = 0  # files whose prompts have no copy (the part shows them, or they are small)
    left_out: int = 0  # automatic requests sent without a copy the engine did not hold yet
    last_ms: float = 0.0

    def as_dict(self, running: int) -> dict:
        return {"prefilled": self.prefilled, "tokens": self.tokens, "not_needed": self.not_needed,
                "left_out": self.left_out, "running": running, "last_ms": round(self.last_ms, 1)}  # fmt: skip


class CopyPrefiller:
    def __init__(self, server) -> None:
        self.server = server
        self.stats = CopyStats()
        self._running: dict[str, asyncio.Task] = {}
        # uri -> (the prompt up to the end of its prefilled copy, the copy's text)
        self._held: dict[str, tuple[list[int], str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def opened(self, uri: str) -> None:
        self._held.pop(uri, None)
        self.schedule(uri)

    def closed(self, uri: str) -> None:
        self._held.pop(uri, None)
        task = self._running.pop(uri, None)
        if task is not None:
            task.cancel()

    def held(self, uri: str, built: BuiltPrompt) -> bool:
        """Whether the engine holds `built`'s copy (True when it has none)."""
        end, held = built.copy_end(), self._held.get(uri)
        # a list comparison: ~0.1 ms at 18K tokens where hashing them took 0.7 ms a request
        return end is None or (held is not None and len(held[0]) == end and built.prompt.ids[:end] == held[0])

    def holds(self, uri: str, built: BuiltPrompt) -> bool:
        """`held`, for a request (on the context thread): a copy not held is counted and
        prefilled (again)."""
        if self.held(uri, built):
            return True
        self._left_out(uri)
        return False

    def may_hold(self, uri: str, text: str) -> bool:
        """Whether the engine may hold a copy of `text` for `uri`, asked before the copy is
        tokenized (`build_prompt`'s `copy_wanted`; `holds` then checks the tokens): a request
        leaves out a copy of other text without tokenizing it, counted and prefilled as there."""
        held = self._held.get(uri)
        if held is not None and held[1] == text:
            return True
        self._left_out(uri)
        return False

    def _left_out(self, uri: str) -> None:
        self.stats.left_out += 1
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._ensure, uri)

    def status(self) -> dict:
        return self.stats.as_dict(len(self._running))

    def has(self, uri: str) -> bool:
        """Whether the engine holds a prefilled copy of `uri` (of its text at the time)."""
        return uri in self._held

    def defer(self) -> list[str]:
        """Stops every copy prefill while something more urgent is prefilled (the window where
        the cursor rests: the engine would run older background prefills first); returns their
        documents, to `schedule` again after (each resumes from the last block it finished,
        which the prefix cache holds)."""
        deferred, self._running = self._running, {}
        for task in deferred.values():
            task.cancel()
        return list(deferred)

    def running(self, uri: str) -> asyncio.Task | None:
        """The prefill of `uri`'s copy, while it runs or waits for a pause."""
        return self._running.get(uri)

    def schedule(self, uri: str) -> None:
        self._loop = asyncio.get_running_loop()
        old = self._running.pop(uri, None)
        if old is not None:
            old.cancel()  # a copy of text or a part that is gone now
        task = self.server.spawn(self._prefill(uri))
        self._running[uri] = task
        while len(self._running) > MAX_PENDING:
            self._running.pop(next(iter(self._running))).cancel()
        task.add_done_callback(lambda t, u=uri: self._running.pop(u, None) if self._running.get(u) is t else None)

    def _ensure(self, uri: str) -> None:
        if uri not in self._running and self.server.documents.get(uri) is not None:
            self.schedule(uri)

    async def _prefill(self, uri: str) -> None:
        server = self.server
        await wait_idle(server)
        session, doc = server.session, server.documents.get(uri)
        source = server.prefill_source(doc)
        if source is None:
            return  # a request once it applies asks for it (`holds`)
        if source.shows(doc.path):
            self.stats.not_needed += 1
            return
        started = time.perf_counter()
        try:
            mode = server.mode  # of automatic requests
            packed = await server.pack_prompt(session, doc.path, "", doc.text, mode)
            built = packed.built
            end = built.copy_end()
            if end is None:
                self.stats.not_needed += 1
                return
            ids = built.prompt.ids[:end]
            anchors = tuple(a for a in built.anchors() if a <= end)
            request = CompletionRequest.prefill_ahead(ids, anchors, mode)
            await prefill_while_idle(server, session, request)
            if server.documents.get(uri) is doc and built.copy_text is not None:
                self._held[uri] = (ids, built.copy_text)
            self.stats.prefilled += 1
            self.stats.tokens += len(ids)
            self.stats.last_ms = (time.perf_counter() - started) * 1000
            logger.info("copy of %s prefilled: %d tokens (%d of them the copy) in %.0f ms", doc.path, len(ids),
                        end - built.shared_tokens, self.stats.last_ms)  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("prefilling the copy of %s failed", doc.path)
