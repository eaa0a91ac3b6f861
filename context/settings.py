"""Typed settings of the workspace context (the language server fills them from
``initializationOptions``; the CLI from flags). Validated on construction."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ContextSettings:
    """How the workspace is indexed, ranked and packed.

    Attributes:
        max_file_bytes: files larger than this are not indexed.
        extra_ignore: gitignore-style patterns applied at the root, on top of the built-in
            defaults and below the workspace's own ``.gitignore``/``.deepfimignore`` files.
        chunk_lines: lines per chunk for lexical similarity.
        window_lines: lines before the cursor (and a quarter as many after) whose
            identifiers drive the cursor-dependent ranking.
        import_depth: how many hops of imports from the cursor file count.
        import_decay: score factor per extra import hop.
        max_recent: how many recently edited / opened files get a recency boost and sit in
            the volatile tail of the prompt.
        cursor_share: at most this share of the budget goes to the cursor file itself.
        cursor_quantum_lines: the cursor file is cut and tokenized in blocks of this many
            lines at fixed line numbers (fewer for small budgets: one line per 128 tokens the
            cursor file may use), so typing inside the window does not move its far edge.
        cursor_driven_share: share of the context budget reserved for files chosen by what
            is near the cursor (they change while typing, so they sit after the rest).
        max_file_share: a file is packed whole only if it takes at most this share of the
            context budget; otherwise its summary is packed.
        watch_debounce_ms: how long watchfiles gathers changes before reporting them.
    """

    max_file_bytes: int = 1_000_000
    extra_ignore: tuple[str, ...] = ()
    chunk_lines: int = 40
    window_lines: int = 40
    import_depth: int = 3
    import_decay: float = 0.5
    max_recent: int = 16
    cursor_share: float = 0.5
    cursor_quantum_lines: int = 16
    cursor_driven_share: float = 0.25
    max_file_share: float = 0.5
    watch_debounce_ms: int = 200

    def __post_init__(self) -> None:
        positive = ("max_file_bytes", "chunk_lines", "window_lines", "cursor_quantum_lines", "watch_debounce_ms")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ContextSettings.{name} must be a positive integer, got {value!r}")
        for name in ("import_depth", "max_recent"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"ContextSettings.{name} must be a non-negative integer, got {value!r}")
        for name in ("import_decay", "cursor_driven_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ContextSettings.{name} must be in [0, 1], got {value!r}")
        for name in ("cursor_share", "max_file_share"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"ContextSettings.{name} must be in (0, 1], got {value!r}")
        if isinstance(self.extra_ignore, str) or not all(isinstance(p, str) for p in self.extra_ignore):
            raise ValueError(f"ContextSettings.extra_ignore must be a sequence of patterns, got {self.extra_ignore!r}")
        object.__setattr__(self, "extra_ignore", tuple(self.extra_ignore))

    def index_fingerprint(self) -> str:
        """Hash of the settings that change what the index holds (keys the index cache)."""
        relevant = {k: v for k, v in asdict(self).items() if k in ("max_file_bytes", "extra_ignore", "chunk_lines")}
        return hashlib.blake2b(repr(sorted(relevant.items())).encode(), digest_size=8).hexdigest()
