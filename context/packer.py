"""Packs ranked workspace files and the cursor file into one FIM prompt within a token budget.

Layout (see `engine/model/prompt_format.py`)::

    header | repository tier | open tier | edited tier | cursor tier | cursor file header | FIM

**Ranking decides which files go in; stability decides where.** The engine reuses its
cached state for the longest unchanged token prefix, so the prompt is ordered from least
to most volatile rather than by score (a score-ordered prompt would reshuffle on every
keystroke and make the prefix cache useless):

1. *repository*: structurally related files (imports, importers, same directory, hubs)
   that are neither open nor recently edited, sorted by path. They change only when the
   cursor moves to another file or imports change.
2. *open*: files open in the editor, oldest first; opening one appends to this tier.
3. *edited*: recently edited files, least recently edited first, so editing a file moves
   it to the end of this tier and invalidates only what follows it.
4. *cursor*: files chosen because of what is near the cursor (definitions of nearby
   names, similar chunks), sorted by path, then leftovers filling the budget. They may
   change with every cursor move, so they come last.

Budget. The cursor file gets up to `cursor_share` of the budget; its prefix/suffix windows
are cut at line multiples of `cursor_quantum_lines` nearest the cursor, and the tokens it
reserves are rounded up to a quantum, so typing does not shift the budget left for the
files before it. Structural candidates get first claim on the context budget except a
`cursor_driven_share` reserved for the cursor tier; so what the cursor tier needs never
changes what precedes it. The price: that reserve may go unused when nothing near the
cursor points anywhere, and a file chosen by both kinds of signal sits in the stable part.

A file is packed whole if it fits (and takes at most `max_file_share` of the context
budget), else as its summary (imports and signatures) if that fits, else skipped. Every
decision is a pure function of the index, the recency lists and the cursor text, so the
same inputs give the same ids.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice

from deepfim.context.cursor import fit_cursor
from deepfim.context.records import FileEntry
from deepfim.context.secrets import redact_split
from deepfim.context.settings import ContextSettings
from deepfim.context.tokens import TokenStore
from deepfim.engine.model.prompt_format import FimOrder, Prompt, PromptSegment, fim_ids, repo_header_ids

TIERS = ("repository", "open", "edited", "cursor")
MIN_CURSOR_TOKENS = 16
MIN_SEGMENT_TOKENS = 16
MAX_CHARS_PER_TOKEN = 12  # a file with more characters per token than this is vanishingly rare
CURSOR_CHARS_PER_TOKEN = 6  # the cursor window looks this far; code averages under 4 characters a token
BATCH = 64
MAX_MISSES = 512  # stop looking for files that fit after this many in a row did not


class BudgetError(ValueError):
    """A token budget too small for the prompt's fixed parts."""


@dataclass
class IncludedFile:
    """One context file in the prompt and why it is there."""

    path: str
    form: str  # "whole" | "summary"
    tokens: int
    score: float
    reasons: list[str]
    tier: str
    start: int = 0
    end: int = 0


@dataclass
class PackResult:
    """The packed prompt, its context files in prompt order, and how long packing took."""

    prompt: Prompt
    included: list[IncludedFile]
    elapsed_ms: float
    budget: int = 0
    cursor_path: str = ""
    prefix_truncated: bool = False
    suffix_truncated: bool = False
    context_budget: int = 0

    @property
    def stable_tokens(self) -> int:
        """Tokens before the first cursor-tier file or the cursor file (survive cursor moves)."""
        for inc in self.included:
            if inc.tier == "cursor":
                return inc.start
        for seg in self.prompt.segments:
            if seg.kind == "cursor_file":
                return seg.start
        return len(self.prompt)


@dataclass
class Pick:
    """A ranked candidate handed to the packer."""

    entry: FileEntry
    score: float
    reasons: list[str]
    tier: str
    recency: int = 0  # order inside the open/edited tiers (larger = more recent)
    filler: bool = False  # a structural candidate taken only to fill the cursor tier's leftover


@dataclass
class PackRequest:
    cursor_path: str
    prefix: str
    suffix: str
    budget: int
    order: FimOrder
    repo_name: str | None
    structural: Callable[[], Iterable[Pick]]  # best first, then every other file; iterable twice
    cursor_driven: list[Pick]  # best first
    text_of: Callable[[FileEntry], str | None]
    settings: ContextSettings = field(default_factory=ContextSettings)


# -- context files ---------------------------------------------------------------------------
def _select(
    picks: Iterable[Pick], budget: int, cap: int, store: TokenStore, text_of, taken: set[str]
) -> tuple[list[tuple[Pick, str, array]], int]:
    """Greedy fit in rank order: whole, else summary, else skip. Returns (chosen, tokens used)."""
    chosen, used, misses = [], 0, 0
    it: Iterator[Pick] = iter(picks)
    while budget - used >= MIN_SEGMENT_TOKENS and misses < MAX_MISSES:
        batch = [p for p in islice(it, BATCH) if p.entry.rel not in taken and p.entry.chars > 0]
        if not batch:
            break
        limit = min(budget - used, cap)
        wanted = []
        for p in batch:
            e = p.entry
            if e.chars <= MAX_CHARS_PER_TOKEN * limit:
                wanted.append((TokenStore.key(e.digest, "whole"), lambda e=e: text_of(e)))
            if e.summary and len(e.summary) <= MAX_CHARS_PER_TOKEN * (budget - used):
                wanted.append((TokenStore.key(e.digest, "summary"), lambda e=e: e.summary))
        store.ensure(wanted)
        for p in batch:
            remaining = budget - used
            if remaining < MIN_SEGMENT_TOKENS:
                break
            overhead = len(store.header(p.entry.rel)) + len(store.tail_ids)
            for form, room in (("whole", min(remaining, cap)), ("summary", remaining)):
                ids = store.get(TokenStore.key(p.entry.digest, form))
                if ids is not None and overhead + len(ids) <= room:
                    chosen.append((p, form, ids))
                    taken.add(p.entry.rel)
                    used += overhead + len(ids)
                    misses = 0
                    break
            else:
                misses += 1
    return chosen, used


def _tier_key(item: tuple[Pick, str, array]) -> tuple:
    pick = item[0]
    tier = TIERS.index(pick.tier)
    return (tier, pick.recency if pick.tier in ("open", "edited") else 0, pick.entry.rel)


def pack(req: PackRequest, store: TokenStore) -> PackResult:
    """Builds the prompt. Raises BudgetError when `req.budget` cannot hold the fixed parts."""
    t0 = time.perf_counter()
    tok, s = store.tok, req.settings
    header = repo_header_ids(tok, req.repo_name)
    cursor_header = store.header(req.cursor_path)
    fixed = len(header) + len(cursor_header) + 3  # fim begin, hole, end
    if req.budget < fixed + MIN_CURSOR_TOKENS:
        raise BudgetError(
            f"budget {req.budget} is too small: the prompt markers and path need {fixed} tokens "
            f"plus at least {MIN_CURSOR_TOKENS} for the cursor file"
        )
    cursor_max = min(req.budget - fixed, max(MIN_CURSOR_TOKENS, int(req.budget * s.cursor_share)))
    reach = cursor_max * CURSOR_CHARS_PER_TOKEN
    # blocks of at most ~1/16 of the allowance, so a small budget is not cut in big steps
    lines_per_block = max(1, min(s.cursor_quantum_lines, cursor_max // 128))
    p_ids, s_ids, p_cut, s_cut = fit_cursor(
        store.blocks, req.prefix, req.suffix, cursor_max, lines_per_block, reach, redact_split
    )
    quantum = max(64, req.budget // 32)
    reserved = min(cursor_max, -(-(len(p_ids) + len(s_ids)) // quantum) * quantum)
    context_budget = req.budget - fixed - reserved
    cap = max(MIN_SEGMENT_TOKENS, int(context_budget * s.max_file_share))
    cursor_reserve = int(context_budget * s.cursor_driven_share)

    taken: set[str] = set()
    first, used1 = _select(req.structural(), context_budget - cursor_reserve, cap, store, req.text_of, taken)
    cursor_picks = [Pick(p.entry, p.score, p.reasons, "cursor") for p in req.cursor_driven]
    leftovers = (
        Pick(p.entry, p.score, [*p.reasons, "fills the remaining budget"], "cursor", filler=True)
        for p in req.structural()
        if p.entry.rel not in taken
    )
    second, _ = _select(chain(cursor_picks, leftovers), context_budget - used1, cap, store, req.text_of, taken)
    ordered = sorted(first, key=_tier_key) + sorted(second, key=lambda item: (item[0].filler, item[0].entry.rel))

    ids = array("I", header)
    segments = [PromptSegment("header", 0, len(ids), None, "BOS and repository name")]
    included = []
    for pick, form, content in ordered:
        start = len(ids)
        ids.extend(store.header(pick.entry.rel))
        ids.extend(content)
        ids.extend(store.tail_ids)
        reason = "; ".join(pick.reasons) or "repository file"
        kind = "file" if form == "whole" else "summary"
        segments.append(PromptSegment(kind, start, len(ids), pick.entry.rel, reason))
        included.append(
            IncludedFile(
                pick.entry.rel, form, len(ids) - start, round(pick.score, 4), pick.reasons, pick.tier, start, len(ids)
            )
        )
    start = len(ids)
    ids.extend(cursor_header)
    segments.append(PromptSegment("cursor_file", start, len(ids), req.cursor_path, "file at the cursor"))
    stable, volatile = fim_ids(tok, p_ids, s_ids, req.order)
    kinds = ("suffix", "prefix") if req.order is FimOrder.SPM else ("prefix", "suffix")
    for kind, part in zip(kinds, (stable, volatile), strict=True):
        start = len(ids)
        ids.extend(part)
        cut = p_cut if kind == "prefix" else s_cut
        where = "before" if kind == "prefix" else "after"
        reason = f"text {where} the cursor" + (" (far end cut to fit the budget)" if cut else "")
        segments.append(PromptSegment(kind, start, len(ids), req.cursor_path, reason))
    assert len(ids) <= req.budget, (len(ids), req.budget)
    prompt = Prompt(ids=ids.tolist(), segments=segments, order=req.order)
    return PackResult(
        prompt, included, (time.perf_counter() - t0) * 1000, req.budget, req.cursor_path, p_cut, s_cut, context_budget
    )
