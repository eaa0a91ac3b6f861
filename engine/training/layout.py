"""Token-budgeted FIM prompts in the engine's layout, shared by training samples and evaluation.

The layout is `deepfim.engine.model.prompt_format`'s (its `repo_header_ids`, `file_segment_ids`,
`file_header_ids`, `fim_ids` build every piece)::

    BOS [repo marker] [context file]* [cursor file header] FIM part      (→ middle EOS)

Budget rule: the cursor file's prefix and suffix come first (at most `cursor_tokens`,
prefix-heavy, the text nearest the cursor kept); context files then fill what is left,
each whole, the last one cut to its head when at least `min_context_tokens` fit.
Evaluation with and without cross-file context uses the same cursor window, so the
comparison isolates the other files.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from deepfim.engine.model.prompt_format import (
    FimOrder,
    Prompt,
    file_header_ids,
    file_segment_ids,
    fim_ids,
    repo_header_ids,
)
from deepfim.engine.model.tokenizer import Tokenizer

PREFIX_SHARE = 0.75


def split_cursor_budget(
    n_prefix: int, n_suffix: int, budget: int, prefix_share: float = PREFIX_SHARE
) -> tuple[int, int]:
    """How many prefix and suffix tokens to keep; space one side does not need goes to the other."""
    if budget < 0:
        raise ValueError(f"cursor budget must be ≥ 0, got {budget}")
    if n_prefix + n_suffix <= budget:
        return n_prefix, n_suffix
    want_prefix = int(budget * prefix_share)
    if n_suffix < budget - want_prefix:
        return budget - n_suffix, n_suffix
    if n_prefix < want_prefix:
        return n_prefix, budget - n_prefix
    return want_prefix, budget - want_prefix


def _module_name(path: str) -> str:
    stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
    if stem in ("__init__", "index", "mod") and "/" in path:
        return path.rsplit("/", 2)[-2]
    return stem


def rank_context_files(
    cursor_path: str, cursor_text: str, candidates: Sequence[tuple[str, object]], rng: random.Random | None = None
) -> list[tuple[str, object]]:
    """Candidates the cursor file names (imports, calls) first, then the rest.

    Within each group the order is random with `rng` (training) or by path (evaluation).
    `candidates` are (path, payload) pairs; the cursor file itself is dropped.
    """
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", cursor_text))
    named, other = [], []
    for path, payload in candidates:
        if path == cursor_path:
            continue
        (named if _module_name(path) in words else other).append((path, payload))
    for group in (named, other):
        if rng is None:
            group.sort(key=lambda item: item[0])
        else:
            rng.shuffle(group)
    return named + other


def pack_fim_prompt(
    tok: Tokenizer,
    prefix_ids: Sequence[int],
    suffix_ids: Sequence[int],
    *,
    order: FimOrder,
    max_tokens: int,
    path: str | None = None,
    repo: str | None = None,
    context: Sequence[tuple[str, Sequence[int]]] = (),
    cursor_tokens: int | None = None,
    min_context_tokens: int = 32,
) -> Prompt:
    """A prompt of at most `max_tokens` ids (the middle and EOS come after it).

    Args:
        prefix_ids, suffix_ids: the cursor file's text before and after the hole, encoded.
        context: other files as (path, encoded text), most useful first.
        cursor_tokens: cap on prefix + suffix tokens (default: all of the budget).
    """
    header = repo_header_ids(tok, repo)
    cursor_header = file_header_ids(tok, path) if path is not None else []
    fixed = len(header) + len(cursor_header) + 3  # fim begin/hole/end
    if max_tokens < fixed:
        raise ValueError(f"max_tokens={max_tokens} cannot hold the {fixed} structural tokens")
    cursor_budget = max_tokens - fixed if cursor_tokens is None else min(cursor_tokens, max_tokens - fixed)
    keep_prefix, keep_suffix = split_cursor_budget(len(prefix_ids), len(suffix_ids), cursor_budget)
    prefix = list(prefix_ids[len(prefix_ids) - keep_prefix :])
    suffix = list(suffix_ids[:keep_suffix])
    remaining = max_tokens - fixed - keep_prefix - keep_suffix
    prompt = Prompt(order=order)
    prompt.add("header", header, reason="BOS and repository name")
    for ctx_path, ctx_ids in context:
        segment = file_segment_ids(tok, ctx_path, ctx_ids)
        if len(segment) > remaining:
            room = remaining - (len(segment) - len(ctx_ids))
            if room < min_context_tokens:
                break
            segment = file_segment_ids(tok, ctx_path, ctx_ids[:room])
        prompt.add("file", segment, ctx_path, "same package")
        remaining -= len(segment)
    if path is not None:
        prompt.add("cursor_file", cursor_header, path, "file at the cursor")
    stable, volatile = fim_ids(tok, prefix, suffix, order)
    first, second = ("suffix", "prefix") if order is FimOrder.SPM else ("prefix", "suffix")
    prompt.add(first, stable, path)
    prompt.add(second, volatile, path)
    assert len(prompt) <= max_tokens, (len(prompt), max_tokens)
    return prompt
