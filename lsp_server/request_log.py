"""One DEBUG line per completion request, for troubleshooting (`logLevel: "debug"`).

The line says where the request was (file, 1-based line and column, surface, trigger, mode),
what answered it (a model call, the typing-through cache, a model call already in flight),
the stage timings and token counts, and, when nothing was shown, why: document not open,
completions disabled, cursor inside a word, private file, no engine, empty after shaping,
superseded by a newer request, cancelled by the client, or an error.

Never the document's text or the suggestion's: only their sizes (secrets never enter a log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from deepfim.lsp_server.documents import uri_to_path

logger = logging.getLogger(__name__)

# the stages of `StageTimings`, in the order they happen
STAGES = ("debounce", "context", "queue", "prefill", "decode", "post")


@dataclass
class RequestRecord:
    """What happened to one completion request; `log` writes it as one line."""

    uri: str
    line: int  # 0-based, as in LSP
    character: int
    surface: str  # "inline" or "completion"
    invoked: bool
    mode: str = ""
    answered_by: str = ""  # "model", "typing-through cache", "model call in flight"
    reason: str = ""  # why nothing was shown
    shown_by_deadline: bool = False  # its complete lines were shown while the rest is written
    timings: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def nothing(self, reason: str) -> None:
        """Note why nothing is shown (the first reason found is the one that counts)."""
        self.reason = self.reason or reason

    def log_answer(self, items: list[str] | None) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        if items:
            sizes = ", ".join(f"{len(text)} chars" for text in items)
            outcome = f"shown {len(items)} ({sizes}) from the {self.answered_by or 'model'}"
            if self.shown_by_deadline:
                outcome += " by the deadline (the rest is being written)"
        else:
            outcome = f"nothing shown: {self.reason or 'no suggestion'}"
        logger.debug("%s", self._line(outcome))

    def log_failure(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            self.nothing("cancelled by the client")
        else:
            self.nothing(f"failed ({type(exc).__name__}: {exc})")
        self.log_answer(None)

    def _line(self, outcome: str) -> str:
        path = uri_to_path(self.uri)
        where = f"{path if path is not None else self.uri}:{self.line + 1}:{self.character + 1}"
        trigger = "invoked" if self.invoked else "automatic"
        head = f"completion {where} {self.surface} {trigger}{' ' + self.mode if self.mode else ''}: {outcome}"
        return " | ".join([head, *self._figures()])

    def _figures(self) -> list[str]:
        t = self.timings
        stages = " ".join(f"{name} {t[f'{name}_ms']:.1f}" for name in STAGES if t.get(f"{name}_ms"))
        total = t.get("total_ms", round((time.perf_counter() - self.started) * 1000, 2))
        figures = [f"{stages + ' ' if stages else ''}total {total:.1f} ms"]
        if t.get("prompt_tokens"):
            figures.append(
                f"prompt {t['prompt_tokens']} tokens ({t.get('cached_tokens', 0)} from the prefix cache), "
                f"{t.get('generated_tokens', 0)} generated"
            )
        return figures
