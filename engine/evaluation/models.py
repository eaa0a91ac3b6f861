"""The no-model baseline: copy what followed the longest earlier occurrence of the text before
the cursor, anywhere in the prompt the product built (repository files, the cursor file's
copy, evidence, the window).

It reads the same `BuiltPrompt` the model gets, so the two compare on identical context.
"""

from __future__ import annotations

from deepfim.context.prompt_builder import BuiltPrompt
from deepfim.engine.model.tokenizer import Tokenizer

CONTEXT_KINDS = ("file", "summary", "cursor_copy", "evidence")


def prompt_texts(tok: Tokenizer, built: BuiltPrompt) -> tuple[list[str], str, str]:
    """(context texts, text before the cursor, text after it) of a built prompt."""
    specials = tok.special_id_set

    def text(start: int, end: int) -> str:
        return tok.decode([i for i in built.prompt.ids[start:end] if i not in specials])

    context, prefix, suffix = [], [], ""
    for seg in built.prompt.segments:
        if seg.kind in CONTEXT_KINDS:
            context.append(text(seg.start, seg.end))
        elif seg.kind == "prefix":
            prefix.append(text(seg.start, seg.end))
        elif seg.kind == "suffix":
            suffix = text(seg.start, seg.end)
    return context, "".join(prefix), suffix


def longest_copy(prefix: str, suffix: str, context: list[str], max_chars: int, min_match: int = 4) -> str:
    """Continuation of the longest earlier occurrence of the prefix's tail (n-gram lookup).

    Looks in the prefix (before its end), the suffix and the context texts; the longest
    match wins, ties going to the prefix's latest occurrence, then the suffix, then the
    context (last text first). Returns "" when no tail of ≥ min_match characters recurs.
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


def copy_completion(tok: Tokenizer, built: BuiltPrompt, max_chars: int) -> str:
    context, prefix, suffix = prompt_texts(tok, built)
    return longest_copy(prefix, suffix, context, max_chars)
