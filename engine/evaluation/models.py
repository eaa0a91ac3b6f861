"""What evaluation calls: the `FimModel` protocol, the copy baseline, and the checkpoint hook.

A model receives the packed `Prompt` (token ids in the engine's layout, with segment
boundaries) and returns the middle as text, without EOS. The harness builds prompts with
the model's `tokenizer`, so a model is scored on exactly what it would see in the editor.

**Hook for the engine:** `load_model(checkpoint)` imports `deepfim.engine.serving.generate` lazily
and calls its ``fim_model(checkpoint: Path | None) -> FimModel`` (None = the embedded
default model). Until that function exists, `load_model` raises `ModelUnavailableError`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.prompt_format import Prompt
from deepfim.engine.model.tokenizer import Tokenizer


@runtime_checkable
class FimModel(Protocol):
    name: str
    tokenizer: Tokenizer

    def complete(self, prompt: Prompt, max_new_tokens: int) -> str:
        """Greedy middle for the prompt (text only, stop at EOS or max_new_tokens)."""
        ...


class ModelUnavailableError(RuntimeError):
    """The checkpoint (or the engine code to run it) is not there."""


def load_model(checkpoint: str | Path | None) -> FimModel:
    """The engine's FimModel for a checkpoint directory (None: the embedded default model)."""
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and not checkpoint.is_dir():
        raise ModelUnavailableError(f"--checkpoint {checkpoint}: not a directory")
    try:
        generate = importlib.import_module("deepfim.engine.serving.generate")
    except ModuleNotFoundError as exc:
        if exc.name != "deepfim.engine.serving.generate":
            raise
        raise ModelUnavailableError(
            "deepfim.engine.serving.generate does not exist yet: the engine provides "
            "`fim_model(checkpoint) -> FimModel` there; evaluate the copy baseline with `--models copy`"
        ) from exc
    factory = getattr(generate, "fim_model", None)
    if factory is None:
        raise ModelUnavailableError(
            "deepfim.engine.serving.generate has no `fim_model(checkpoint) -> FimModel` function"
        )
    model = factory(checkpoint)
    if not isinstance(model, FimModel):
        raise ModelUnavailableError(f"fim_model({checkpoint}) returned {type(model).__name__}, not a FimModel")
    return model


def prompt_texts(tok: Tokenizer, prompt: Prompt) -> tuple[list[str], str, str]:
    """(context file texts, prefix, suffix) decoded from a prompt's segments."""
    specials = tok.special_id_set

    def text(ids: list[int]) -> str:
        return tok.decode([i for i in ids if i not in specials])

    context, prefix, suffix = [], "", ""
    for seg in prompt.segments:
        ids = prompt.ids[seg.start : seg.end]
        if seg.kind == "file":
            # Drop the path: it sits between the file-name markers.
            sp = tok.special
            if sp.file_begin is not None and sp.file_begin in ids:
                ids = ids[ids.index(sp.file_begin) + 1 :]
            context.append(text(ids))
        elif seg.kind == "prefix":
            prefix = text(ids)
        elif seg.kind == "suffix":
            suffix = text(ids)
    return context, prefix, suffix


def longest_copy(prefix: str, suffix: str, context: list[str], max_chars: int, min_match: int = 4) -> str:
    """Continuation of the longest earlier occurrence of the prefix's tail (n-gram lookup).

    Looks in the prefix (before its end), the suffix and the context files; the longest
    match wins, ties going to the prefix's latest occurrence, then the suffix, then the
    context (last file first). Returns "" when no tail of ≥ min_match characters recurs.
    """
    body = prefix[:-1]  # an occurrence must end before the cursor, not be the tail itself

    def found(k: int) -> bool:
        tail = prefix[-k:]
        return tail in body or tail in suffix or any(tail in c for c in context)

    lo, hi = 0, min(len(prefix), 512)
    while lo < hi:  # largest k with found(k); found is monotone in k
        mid = (lo + hi + 1) // 2
        if found(mid):
            lo = mid
        else:
            hi = mid - 1
    if lo < min_match:
        return ""
    tail = prefix[-lo:]
    if (pos := body.rfind(tail)) >= 0:
        return prefix[pos + lo : pos + lo + max_chars]
    if (pos := suffix.find(tail)) >= 0:
        return suffix[pos + lo : pos + lo + max_chars]
    for text in reversed(context):
        if (pos := text.rfind(tail)) >= 0:
            return text[pos + lo : pos + lo + max_chars]
    raise AssertionError("found() and the lookups disagree")


class CopyBaseline:
    """No-model baseline: copy what followed the longest recurrence of the text before the cursor."""

    name = "copy"

    def __init__(self, tokenizer: Tokenizer | None = None, chars_per_token: int = 4) -> None:
        self.tokenizer = tokenizer or Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")
        self.chars_per_token = chars_per_token

    def complete(self, prompt: Prompt, max_new_tokens: int) -> str:
        context, prefix, suffix = prompt_texts(self.tokenizer, prompt)
        return longest_copy(prefix, suffix, context, max_chars=max_new_tokens * self.chars_per_token)
