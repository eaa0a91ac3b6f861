"""Typed settings of the workspace context: how files are indexed and how prompts are cut.

This is the one place that sizes a prompt: the repository part, the copy of the cursor
file, and the cursor window's parts (suffix, far prefix, evidence, near prefix) are all
`PromptBudget` fields. The language server fills them from its settings and the mode's
preset, the CLI from flags, training and evaluation from their configs. Validated on
construction.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class PromptBudget:
    """Tokens of each part of a prompt (see `context/prompt_builder.py` for the layout).

    Attributes:
        repository: the repository part: files in a deterministic order, the same for every
            cursor file, so it is prefilled once and shared.
        cursor_file: the copy of the cursor file placed after the repository part when the
            file is not in it (edited this session, or beyond the repository budget).
        suffix: text after the cursor.
        far_prefix: text before the evidence. Beyond the 128-token sliding window the model
            sees it pooled, as it sees the cursor file's copy (or its repository segment) just
            before the window, and every new file prefills it: 64 tokens (trained: 64-640).
            Held-out repositories (324 holes, `deepfim eval --suites heldout --per-kind 4`):
            EM / edit similarity 7.1 / 30.8 at 320, 7.4 / 31.4 at 64, 6.8 / 31.4 at 0.
        evidence: retrieved code and definitions of the names at the cursor, placed between
            the far and the near prefix (the window layout), so their last tokens sit inside
            the model's 128-token sliding window.
        near_prefix: the lines just before the cursor's line (the cursor's line itself is
            always whole and not counted), nearest the completion.
    """

    repository: int = 16384
    cursor_file: int = 2048
    suffix: int = 96
    far_prefix: int = 64
    evidence: int = 192
    near_prefix: int = 48

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"PromptBudget.{name} must be a non-negative integer, got {value!r}")

    def scaled(self, factor: int) -> PromptBudget:
        """The cursor parts `factor` times larger (expert mode); the repository part unchanged."""
        return replace(
            self, cursor_file=self.cursor_file * factor, suffix=self.suffix * factor,
            far_prefix=self.far_prefix * factor, evidence=self.evidence * factor,
        )  # fmt: skip

    @classmethod
    def for_context(cls, context_tokens: int, repository_tokens: int) -> PromptBudget:
        """The budget behind the language server's two settings: `contextBudget` (everything
        but the repository part: the window, and the copy of the cursor file in what is left)
        and `repositoryBudget`."""
        base = cls(repository=repository_tokens)
        return replace(base, cursor_file=max(0, context_tokens - base.window))

    @property
    def window(self) -> int:
        """The cursor window (what a keystroke in a new place may have to prefill)."""
        return self.suffix + self.far_prefix + self.evidence + self.near_prefix


@dataclass(frozen=True)
class ContextSettings:
    """How the workspace is indexed and prompts are assembled.

    Attributes:
        max_file_bytes: files (and open buffers) larger than this are not indexed.
        extra_ignore: gitignore-style patterns applied at the root, on top of the built-in
            defaults and below the workspace's own ``.gitignore``/``.deepfimignore`` files.
        chunk_lines: lines per chunk for lexical similarity (which files to look into).
        similar_window_lines: lines of a retrieved window of similar code.
        max_file_share: a repository file is packed whole only if it takes at most this share
            of the repository budget; otherwise its summary (imports and signatures).
        cursor_quantum_lines: the far prefix and the suffix are cut in blocks of this many
            lines at fixed line numbers, so typing does not move their far edges.
        max_recent: how many recently edited / opened files retrieval looks into first.
        watch_debounce_ms: how long watchfiles gathers changes before reporting them.
    """

    max_file_bytes: int = 1_000_000
    extra_ignore: tuple[str, ...] = ()
    chunk_lines: int = 40
    similar_window_lines: int = 8
    max_file_share: float = 0.25
    cursor_quantum_lines: int = 16
    max_recent: int = 16
    watch_debounce_ms: int = 200

    def __post_init__(self) -> None:
        positive = ("max_file_bytes", "chunk_lines", "similar_window_lines", "cursor_quantum_lines")
        for name in (*positive, "watch_debounce_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ContextSettings.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.max_recent, int) or self.max_recent < 0:
            raise ValueError(f"ContextSettings.max_recent must be a non-negative integer, got {self.max_recent!r}")
        if not 0.0 < self.max_file_share <= 1.0:
            raise ValueError(f"ContextSettings.max_file_share must be in (0, 1], got {self.max_file_share!r}")
        if isinstance(self.extra_ignore, str) or not all(isinstance(p, str) for p in self.extra_ignore):
            raise ValueError(f"ContextSettings.extra_ignore must be a sequence of patterns, got {self.extra_ignore!r}")
        object.__setattr__(self, "extra_ignore", tuple(self.extra_ignore))

    def index_fingerprint(self) -> str:
        """Hash of the settings that change what the index holds (keys the index cache)."""
        relevant = {k: v for k, v in asdict(self).items() if k in ("max_file_bytes", "extra_ignore", "chunk_lines")}
        return hashlib.blake2b(repr(sorted(relevant.items())).encode(), digest_size=8).hexdigest()
