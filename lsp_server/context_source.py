"""The one place the language server talks to the workspace context packer.

`ContextSource` wraps `deepfim.context.workspace.Workspace` (index, ranking, packing) for
one workspace folder. Until its index is ready — or when the context package is missing or
fails — prompts hold the current file only, fitted to the budget (`pack_current_file`).

All calls except `scan` come from the server's single context thread, so the workspace
never sees two packs at once; `scan` runs on its own thread and packing waits for it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfim.engine.model.prompt_format import FimOrder, Prompt, build_fim_prompt
from deepfim.engine.model.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

SUFFIX_SHARE = 0.25  # of the budget, when the current file alone does not fit
CHARS_PER_TOKEN = 6  # generous: text is cut in characters first, then fitted in tokens
PACK_CHARS_PER_TOKEN = 16  # text handed to the packer: far more than any budget can hold


class PrivateFile(Exception):
    """The file at the cursor is secret (by name): nothing of it may reach the model."""


def bounded(prefix: str, suffix: str, budget: int) -> tuple[str, str]:
    """The part of a (possibly huge) document the packer can use, cut at line starts.

    The prefix's cut point moves in steps of a quarter of the window, so it stays put while
    the user types and the prompt's start (and the engine's prefix cache) stays stable.
    """
    window = budget * PACK_CHARS_PER_TOKEN
    if len(prefix) > window:
        step = window // 4
        start = ((len(prefix) - window) // step) * step
        newline = prefix.find("\n", start)
        prefix = prefix[newline + 1 :] if 0 <= newline < len(prefix) - 1 else prefix[start:]
    if len(suffix) > window:
        newline = suffix.rfind("\n", 0, window)
        suffix = suffix[: newline + 1] if newline > 0 else suffix[:window]
    return prefix, suffix


def _secret_path_reason(path: Path) -> str | None:
    try:
        from deepfim.context.secrets import secret_path_reason
    except ImportError:
        return None
    return secret_path_reason(path.as_posix())


def _redact(prefix: str, suffix: str) -> tuple[str, str]:
    try:
        from deepfim.context.secrets import redact_split
    except ImportError:
        return prefix, suffix
    return redact_split(prefix, suffix)


@dataclass
class PackedContext:
    prompt: Prompt
    included: list[str] = field(default_factory=list)  # context files besides the current one
    elapsed_ms: float = 0.0
    source: str = "file"  # "workspace" or "file"


def _fit_lines(ids_of: Callable[[str], list[int]], text: str, budget: int, keep_end: bool) -> list[int]:
    """Token ids of the longest run of whole lines at the end (or start) of `text` in budget."""
    if budget <= 0 or not text:
        return []
    text = text[-budget * CHARS_PER_TOKEN :] if keep_end else text[: budget * CHARS_PER_TOKEN]
    ids = ids_of(text)
    while len(ids) > budget:
        lines = text.split("\n")
        drop = max(1, len(lines) // 4) if len(ids) > budget * 1.25 else 1
        if len(lines) <= 1:  # one huge line: cut by tokens
            return ids[-budget:] if keep_end else ids[:budget]
        text = "\n".join(lines[drop:] if keep_end else lines[:-drop])
        ids = ids_of(text)
    return ids


def pack_current_file(
    tokenizer: Tokenizer, path: str, prefix: str, suffix: str, budget: int, order: FimOrder, repo_name: str | None
) -> PackedContext:
    """A prompt from the current file alone: as much prefix and suffix as fit in `budget`
    (secrets in the text are redacted when the context package is installed)."""
    start = time.perf_counter()
    prefix, suffix = _redact(*bounded(prefix, suffix, budget))
    overhead = len(build_fim_prompt(tokenizer, "", "", order, path=path, repo_name=repo_name))
    room = max(budget - overhead, 0)
    suffix_ids = _fit_lines(tokenizer.encode, suffix, int(room * SUFFIX_SHARE), keep_end=False)
    prefix_ids = _fit_lines(tokenizer.encode, prefix, room - len(suffix_ids), keep_end=True)
    prompt = build_fim_prompt(
        tokenizer, tokenizer.decode(prefix_ids), tokenizer.decode(suffix_ids), order, path=path, repo_name=repo_name
    )
    return PackedContext(prompt, [], (time.perf_counter() - start) * 1000, "file")


def _workspace_class() -> type | None:
    try:
        from deepfim.context.workspace import Workspace
    except ImportError:
        return None
    return Workspace


def _as_dict(value: Any) -> dict:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return dict(value) if isinstance(value, dict) else {}


class ContextSource:
    """Context for the documents under one root (or for loose files when `root` is None)."""

    def __init__(self, root: Path | None, cache_dir: Path | None = None) -> None:
        self.root = root
        cls = _workspace_class() if root is not None else None
        self._workspace = None
        if cls is not None:
            try:
                self._workspace = cls(root, cache_dir=cache_dir)
            except Exception:
                logger.exception("cannot open the workspace index for %s; packing the current file only", root)
        self._ready = threading.Event()
        self._stats: dict = {}
        self.last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def indexed(self) -> bool:
        """Whether a workspace index exists at all (else: current-file prompts only)."""
        return self._workspace is not None

    def scan(self, progress: Callable[..., None] | None = None) -> dict:
        """Index the workspace (blocking; run it on its own thread)."""
        if self._workspace is None:
            return {}
        try:
            self._stats = _as_dict(self._workspace.scan(progress=progress))
            self._ready.set()
            try:
                self._workspace.start_watching()
            except Exception:
                logger.exception("file watching failed for %s", self.root)
        except Exception as exc:
            logger.exception("indexing %s failed", self.root)
            self.last_error = f"indexing {self.root} failed: {exc}"
        return self._stats

    def contains(self, path: Path) -> bool:
        return self.root is not None and path.is_relative_to(self.root)

    def relative(self, path: Path | None) -> str:
        if path is None:
            return "untitled"
        return path.relative_to(self.root).as_posix() if self.contains(path) else path.name

    def update_buffer(self, path: Path, text: str | None) -> None:
        if self._workspace is not None and self.ready:
            self._workspace.update_buffer(path, text)

    def note_opened(self, path: Path) -> None:
        if self._workspace is not None and self.ready:
            self._workspace.note_opened(path)

    def note_edited(self, path: Path) -> None:
        if self._workspace is not None and self.ready:
            self._workspace.note_edited(path)

    def is_private(self, path: Path | None) -> bool:
        if path is None:
            return False
        if self._workspace is not None:
            return bool(self._workspace.is_private(path))
        return _secret_path_reason(path) is not None

    def pack(
        self, tokenizer: Tokenizer, path: Path | None, prefix: str, suffix: str, budget: int, order: FimOrder
    ) -> PackedContext:
        """The prompt for a cursor in `path`.

        Raises:
            PrivateFile: `path` is secret; it must not be completed at all.
        """
        if self.is_private(path):
            raise PrivateFile(f"{path} is a secret file")
        repo_name = self.root.name if self.root is not None else None
        if self._workspace is not None and self.ready and path is not None:
            window_prefix, window_suffix = bounded(prefix, suffix, budget)
            try:
                result = self._workspace.pack(
                    tokenizer, path, window_prefix, window_suffix, budget, order=order, repo_name=repo_name
                )
                included = [getattr(inc, "path", str(inc)) for inc in result.included]
                return PackedContext(result.prompt, included, result.elapsed_ms, "workspace")
            except Exception as exc:
                logger.exception("workspace packing failed; packing the current file only")
                self.last_error = f"context packing failed: {exc}"
        return pack_current_file(tokenizer, self.relative(path), prefix, suffix, budget, order, repo_name)

    def stats(self) -> dict:
        stats = {"files": 0, "definitions": 0, "bytes": 0}
        if self._workspace is not None:
            try:
                stats.update(_as_dict(self._workspace.stats()))
            except Exception:
                logger.exception("workspace statistics failed")
        stats["ready"] = self.ready
        return stats

    def close(self) -> None:
        """Stop watching and save the index cache; later calls do nothing."""
        workspace, self._workspace = self._workspace, None
        if workspace is not None:
            try:
                workspace.close()
            except Exception:
                logger.exception("closing the workspace index failed")
