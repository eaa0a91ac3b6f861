"""The language server's handle on one workspace folder's context (or on loose files).

`ContextSource` forwards buffer events to a `deepfim.context.workspace.Workspace` and asks it
for prompts; every decision about what goes into a prompt is the context package's
(`context/prompt_builder.py`). It also keeps the repository part the engine has prefilled:
prompts use `served` until the background prefill of a newer part (`pending`) completes.

Loose files (no workspace folder) and workspaces whose index is not ready yet get prompts
built from the cursor file alone: its window, its copy and the evidence found in it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepfim.context.evidence import RepoView
from deepfim.context.prompt_builder import BuiltPrompt, CursorFile, PromptSpec, build_prompt
from deepfim.context.repository_part import EMPTY, RepositoryPart
from deepfim.context.secrets import secret_path_reason
from deepfim.context.tokens import TokenStore
from deepfim.context.workspace import PrivateFileError, Workspace
from deepfim.engine.model.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

NO_WORKSPACE = RepoView({}, {}, None, None, lambda rel: None)


class PrivateFile(Exception):
    """The file at the cursor is secret (by name): nothing of it may reach the model."""


@dataclass
class PackedContext:
    built: BuiltPrompt
    source: str = "file"  # "workspace" or "file"
    included: list[str] = field(default_factory=list)  # files besides the cursor file

    @property
    def prompt(self):
        return self.built.prompt

    @property
    def elapsed_ms(self) -> float:
        return self.built.elapsed_ms

    def without_copy(self) -> PackedContext:
        return PackedContext(self.built.without_copy(), self.source, self.included)


class ContextSource:
    """Context for the documents under one root (or for loose files when `root` is None)."""

    def __init__(self, root: Path | None, cache_dir: Path | None = None, parts_on_demand: bool = True) -> None:
        """`parts_on_demand`: without a served part, build one for the first prompt (one-shot
        commands); the language server passes False: until its warmer has prefilled a part,
        prompts carry none, so no keystroke waits for a repository prefill."""
        self.root = root
        self.parts_on_demand = parts_on_demand
        self._workspace: Workspace | None = None
        if root is not None:
            try:
                self._workspace = Workspace(root, cache_dir=cache_dir)
            except Exception:
                logger.exception("cannot open the workspace index for %s; prompts hold the current file only", root)
        self._loose_stores: weakref.WeakKeyDictionary[Tokenizer, TokenStore] = weakref.WeakKeyDictionary()
        self._ready = threading.Event()
        self._stats: dict = {}
        self.served: RepositoryPart | None = None  # the repository part the engine has prefilled
        self.last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def indexed(self) -> bool:
        """Whether a workspace index exists at all (else: current-file prompts only)."""
        return self._workspace is not None

    def scan(self, progress: Callable[..., None] | None = None, pause: Callable[[], object] | None = None) -> dict:
        """Index the workspace (blocking; run it on its own thread). `pause`: see `Workspace.scan`."""
        workspace = self._workspace  # `close` may run meanwhile (the server shutting down)
        if workspace is None:
            return {}
        try:
            self._stats = asdict(workspace.scan(progress=progress, pause=pause))
            self._ready.set()
            try:
                workspace.start_watching()
            except Exception:
                logger.exception("file watching failed for %s", self.root)
        except Exception as exc:
            logger.exception("indexing %s failed", self.root)
            self.last_error = f"indexing {self.root} failed: {exc}"
        return self._stats

    def contains(self, path: Path) -> bool:
        return self.root is not None and path.is_relative_to(self.root)

    def shows(self, path: Path) -> bool:
        """Whether the served repository part shows the file (its prompts need no copy)."""
        if self._workspace is None or self.served is None:
            return False
        rel = self._workspace.relative(path)
        return rel is not None and self.served.contains(rel)

    def update_buffer(self, path: Path, text: str | None) -> None:
        if self._workspace is not None and self.ready:
            self._workspace.update_buffer(path, text)

    def note_opened(self, path: Path) -> None:
        if self._workspace is not None and self.ready:
            self._workspace.note_opened(path)

    def note_edited(self, path: Path) -> None:
        if self._workspace is not None and self.ready:
            self._workspace.note_edited(path)

    def snapshot_copy(self, path: Path) -> None:
        """Fix the cursor file's copy at the buffer's current text (on idle, after typing)."""
        if self._workspace is not None and self.ready:
            self._workspace.snapshot_copy(path)

    def read_ahead_order(self) -> list[str]:
        return self._workspace.read_ahead_order() if self._workspace is not None and self.ready else []

    def read_ahead(self, rels: list[str]) -> None:
        """Prepares what a newly opened file's evidence reads (`Workspace.read_ahead`)."""
        if self._workspace is not None and self.ready:
            self._workspace.read_ahead(rels)

    def is_private(self, path: Path | None) -> bool:
        if path is None:
            return False
        if self._workspace is not None:
            return bool(self._workspace.is_private(path))
        return secret_path_reason(path.as_posix()) is not None

    def repository_part(self, tokenizer: Tokenizer, budget: int, refresh: bool = False) -> RepositoryPart | None:
        """The workspace's current repository part (None until the index is ready)."""
        if self._workspace is None or not self.ready:
            return None
        return self._workspace.repository_part(tokenizer, budget, refresh)

    def pack(
        self,
        tokenizer: Tokenizer,
        path: Path | None,
        prefix: str,
        suffix: str,
        spec: PromptSpec,
        copy_wanted: Callable[[str], bool] | None = None,
        on_head: Callable[[list[int], tuple[int, ...], bool], None] | None = None,
    ) -> PackedContext:
        """The prompt for a cursor in `path` (`copy_wanted`, `on_head`: `prompt_builder.build_prompt`'s).

        Raises:
            PrivateFile: `path` is secret; it must not be completed at all.
        """
        if self.is_private(path):
            raise PrivateFile(f"{path} is a secret file")
        repo_name = self.root.name if self.root is not None else None
        if self._workspace is not None and self.ready and path is not None:
            part = self.served if self.served is not None or self.parts_on_demand else EMPTY
            try:
                built = self._workspace.prompt(
                    tokenizer, spec, path, prefix, suffix, repo_name, part, copy_wanted, on_head
                )
                files = [f.rel for f in built.repository.files] + sorted({e.path for e in built.evidence})
                return PackedContext(built, "workspace", files)
            except PrivateFileError as exc:
                raise PrivateFile(str(exc)) from exc
            except Exception as exc:
                logger.exception("workspace prompt failed; prompting with the current file only")
                self.last_error = f"context packing failed: {exc}"
        name = path.name if path is not None else "untitled"
        store = self._loose_stores.get(tokenizer)
        if store is None:
            store = self._loose_stores[tokenizer] = TokenStore(tokenizer, None)
        cursor = CursorFile(name, prefix, suffix)
        built = build_prompt(store, spec, cursor, repo_name, None, NO_WORKSPACE, copy_wanted)
        return PackedContext(built, "file", [])

    def stats(self) -> dict:
        stats = {"files": 0, "definitions": 0, "bytes": 0}
        if self._workspace is not None:
            try:
                stats.update(asdict(self._workspace.stats()))
            except Exception:
                logger.exception("workspace statistics failed")
        stats["ready"] = self.ready
        stats["repository_tokens"] = len(self.served) if self.served is not None else 0
        return stats

    def close(self) -> None:
        """Stop watching and save the index cache; later calls do nothing."""
        workspace, self._workspace = self._workspace, None
        if workspace is not None:
            try:
                workspace.close()
            except Exception:
                logger.exception("closing the workspace index failed")
