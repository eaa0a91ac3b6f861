"""`ServingProfile`: how DeepFIM prompts and decodes one checkpoint.

The model's shape is `config.json` (`ModelArgs`); how it is best *served* is a separate,
optional `serving.json` beside it, because the same architecture may be trained on different
prompt layouts, and a decoding aid measured better for one checkpoint may hurt another. A
checkpoint without the file (every real DeepSeek-V4 release) gets DeepSeek's own repository-
level FIM layout and no decoding aid that could change what the model itself would write.

Fields (all optional in the file):
    prompt_layout: "window" (repository files, then the cursor window with the retrieved
        evidence inside the 128-token sliding window: what the embedded model is trained on)
        or "files" (evidence as files before the cursor file, DeepSeek's repo-level layout).
    fim_order: "spm" or "psm" (default: SPM when `config.json` lists it, else PSM).
    repository_tokens: default budget of the repository part (background-prefilled once,
        shared by every cursor file).
    copy_drafts: propose the continuation of text that recurs in the context as speculative
        drafts the model accepts by its own likelihood (changes greedy output).
    copy_min_prob: a copied token is accepted when the model gives it at least this probability.
    index_aware: bias identifiers to names that exist (the workspace index, names in scope).
    confidence_gate: no suggestion when the mean log-probability per token is below this
        (None: always show).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from deepfim.engine.model.config import ConfigError

LAYOUTS = ("window", "files")
FILE_NAME = "serving.json"


@dataclass(frozen=True)
class ServingProfile:
    prompt_layout: str = "files"
    fim_order: str = "psm"
    repository_tokens: int = 16384
    copy_drafts: bool = False
    copy_min_prob: float = 0.1
    index_aware: bool = False
    confidence_gate: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.prompt_layout not in LAYOUTS:
            problems.append(f"prompt_layout={self.prompt_layout!r} is not one of {list(LAYOUTS)}")
        if self.fim_order not in ("spm", "psm"):
            problems.append(f"fim_order={self.fim_order!r} is not 'spm' or 'psm'")
        if self.prompt_layout == "window" and self.fim_order != "spm":
            problems.append("the window layout needs fim_order 'spm' (the prefix must be last)")
        if not isinstance(self.repository_tokens, int) or self.repository_tokens < 0:
            problems.append(f"repository_tokens={self.repository_tokens!r} must be a non-negative integer")
        if not 0.0 < self.copy_min_prob <= 1.0:
            problems.append(f"copy_min_prob={self.copy_min_prob!r} must be in (0, 1]")
        if problems:
            raise ConfigError("; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def defaults(cls, fim_orders: tuple[str, ...] | list[str]) -> ServingProfile:
        """The profile of a checkpoint without `serving.json` (DeepSeek's own layout, no aids)."""
        return cls(fim_order="spm" if "spm" in fim_orders else "psm")

    @classmethod
    def for_checkpoint(cls, checkpoint: str | Path, fim_orders: tuple[str, ...]) -> ServingProfile:
        """The checkpoint's `serving.json` over the defaults for its FIM orders."""
        base = cls.defaults(fim_orders)
        path = Path(checkpoint) / FILE_NAME
        if not path.is_file():
            return base
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable JSON ({exc})") from exc
        return cls.from_dict(raw, base, str(path))

    @classmethod
    def from_dict(cls, raw: Any, base: ServingProfile | None = None, source: str = "serving profile") -> ServingProfile:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown fields {unknown}")
        try:
            return replace(base or cls(), **raw)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc
