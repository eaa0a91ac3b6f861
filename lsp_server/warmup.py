"""Keeps each workspace's repository part prefilled in the engine, in the background.

Every prompt starts with the same tokens: BOS, the repository name and the repository part
(`context/repository_part.py`). The warmer builds the part once the index is ready and sends
it to the engine as a prefill-only request at background priority (a keystroke preempts it
within one chunk), with `$/progress`; only when the engine holds its state does the context
start serving it (`ContextSource.served`), so no keystroke ever waits for a repository
prefill. Until then prompts carry no repository part.

After edits settle (`IDLE_S` without a keystroke or edit), the warmer refreshes: the cursor
files' copies are fixed at their current text, a new part leaves the edited files out, and
only what changed is prefilled again (the engine's prefix cache shares the unchanged start);
the new part is served when that is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from deepfim.engine.api import CompletionRequest, Mode
from deepfim.engine.model.prompt_format import repo_header_ids
from deepfim.kernels import cbuild
from deepfim.kernels.decode_step import cpu as c_step_cpu
from deepfim.lsp_server.context_source import ContextSource
from deepfim.lsp_server.idle_prefill import wait_idle
from deepfim.lsp_server.modes import preset_for, prompt_spec
from deepfim.lsp_server.progress import ProgressReporter

logger = logging.getLogger(__name__)

IDLE_S = 2.0
POLL_S = 0.25
# How long a warm waits for the model calls in flight to end (see `_after_running_calls`).
RUNNING_CALLS_WAIT_S = 2.0
READ_AHEAD_BATCH = 2  # files per context-thread call (~3-10 ms each on a 2-core machine)


@dataclass
class WarmState:
    """What `deepfim/status` says about one workspace's repository part."""

    state: str = "cold"  # "cold" | "warming" | "warm"
    tokens: int = 0  # of the served part
    pending_tokens: int = 0
    prefilled: int = 0
    last_ms: float = 0.0
    read_ahead: int = 0  # files read ahead for the evidence since warm (`_read_ahead`)...
    read_ahead_files: int = 0  # ...of these

    def as_dict(self) -> dict:
        return {"state": self.state, "tokens": self.tokens, "pending_tokens": self.pending_tokens,
                "progress": round(self.prefilled / self.pending_tokens, 3) if self.pending_tokens else 1.0,
                "last_ms": round(self.last_ms, 1), "read_ahead": self.read_ahead,
                "read_ahead_files": self.read_ahead_files}  # fmt: skip


class RepositoryWarmer:
    def __init__(self, server) -> None:
        self.server = server
        self.states: dict[ContextSource, WarmState] = {}
        self._running: set[ContextSource] = set()
        self.last_activity = time.monotonic()
        self._stale: set[ContextSource] = set()

    def touch(self, source: ContextSource | None = None) -> None:
        """An open, a keystroke, an edit or a request: refreshes (and copy prefills,
        `copy_prefill.py`) wait until the user pauses."""
        self.last_activity = time.monotonic()
        if source is not None and source.indexed:
            self._stale.add(source)

    def status(self) -> dict:
        return {str(s.root): st.as_dict() for s, st in self.states.items() if s.root is not None}

    async def warm(self, source: ContextSource, refresh: bool = False) -> None:
        """Builds the source's part and prefills it; serves it when the engine holds it."""
        server = self.server
        session = server.session
        if session is None or not source.ready or source in self._running:
            return
        self._running.add(source)
        state = self.states.setdefault(source, WarmState())
        try:
            await self._after_running_calls()
            spec = prompt_spec(preset_for(Mode.INSTANT, server.settings), session.profile(Mode.INSTANT))
            tok = session.tokenizer
            loop = asyncio.get_running_loop()
            part = await loop.run_in_executor(
                server.pipeline.executor, source.repository_part, tok, spec.budget.repository, refresh
            )
            if part is None or (source.served is not None and part.key == source.served.key):
                return
            ids = repo_header_ids(tok, source.root.name if source.root else None) + list(part.ids)
            if part.ids:
                await self._after_c_step()
                await self._prefill(source, state, ids)
            source.served = part
            state.state, state.tokens, state.pending_tokens = "warm", len(ids), 0
            server.spawn(self._read_ahead(source, state))
        except Exception:
            logger.exception("prefilling the repository part of %s failed", source.root)
        finally:
            self._running.discard(source)

    async def _read_ahead(self, source: ContextSource, state: WarmState) -> None:
        """Once warm, reads ahead what a newly opened file's evidence reads (the files beside it
        and their similar-code line index), a few files at a time on the context thread, only
        while the user pauses: a request waits behind at most one batch."""
        loop, executor = asyncio.get_running_loop(), self.server.pipeline.executor
        started = time.perf_counter()
        try:
            rels = await loop.run_in_executor(executor, source.read_ahead_order)
            state.read_ahead, state.read_ahead_files = 0, len(rels)
            for i in range(0, len(rels), READ_AHEAD_BATCH):
                await wait_idle(self.server)
                await loop.run_in_executor(executor, source.read_ahead, rels[i : i + READ_AHEAD_BATCH])
                state.read_ahead = min(i + READ_AHEAD_BATCH, len(rels))
        except Exception:
            logger.exception("reading ahead in %s failed", source.root)
            return
        logger.debug(
            "read ahead %d files of %s in %.0f ms", len(rels), source.root, (time.perf_counter() - started) * 1000
        )

    async def _after_running_calls(self) -> None:
        """Lets the model calls in flight end first (for at most `RUNNING_CALLS_WAIT_S`): at
        start, the first requests wait for the model with the warm; if the part were built first
        they would queue for the context thread behind it and for the engine behind its first
        prefill chunk (~100 ms of a cold start's first suggestion). Later a keystroke preempts
        the prefill anyway."""
        deadline = time.monotonic() + RUNNING_CALLS_WAIT_S
        while len(self.server.runs) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _after_c_step(self) -> None:
        """At a first start the in-process engine serves on the modules while its C decode step
        compiles (engine/serving/model_runner.py). A part prefilled then would be slower, and is
        not persisted: later chunks take the C step, whose sums differ from the modules' by
        rounding, so the state is not what a cold run computes (`ModelState.on_modules`). The
        first suggestions are out by now: the build may start (`release_later`), and the part
        waits for it."""
        if c_step_cpu.compiling():
            cbuild.release_later()
            await asyncio.to_thread(c_step_cpu.wait_built)

    async def _prefill(self, source: ContextSource, state: WarmState, ids: list[int]) -> None:
        session = self.server.session
        started = time.perf_counter()
        state.state, state.pending_tokens, state.prefilled = "warming", len(ids), 0
        name = source.root.name if source.root else ""
        progress = ProgressReporter(self.server, f"DeepFIM: reading {name}")
        progress.begin(f"{len(ids):,} tokens")
        request = CompletionRequest.prefill_ahead(ids, (len(ids),), Mode.INSTANT, persist=True)
        handle = session.backend.submit(request)
        try:
            while not handle.done():
                state.prefilled = getattr(handle, "prefilled", 0)
                progress.report_threadsafe(
                    f"{state.prefilled:,} of {len(ids):,} tokens", 100 * state.prefilled // len(ids)
                )
                await asyncio.sleep(POLL_S)
            await asyncio.wrap_future(handle.future)
        finally:
            state.last_ms = (time.perf_counter() - started) * 1000
            progress.end(f"{len(ids):,} tokens ready in {state.last_ms / 1000:.1f} s")
        logger.info("repository part of %s prefilled: %d tokens in %.0f ms", source.root, len(ids), state.last_ms)

    async def run(self) -> None:
        """The refresh loop: when the user pauses after edits, fix copies and re-warm."""
        while True:
            await asyncio.sleep(POLL_S * 2)
            if not self._stale or time.monotonic() - self.last_activity < IDLE_S:
                continue
            stale, self._stale = self._stale, set()
            for source in stale:
                await self.server.snapshot_copies(source)
                await self.warm(source, refresh=True)
