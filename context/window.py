"""The cursor window: the suffix, the far prefix and the near prefix, cut to their budgets.

    ... far prefix | near prefix (the lines just before the cursor's line) + the cursor's line

The near prefix is the cursor's line (always whole) plus as many earlier lines as fit in its
budget, counted without the cursor's line: typing on a line therefore only appends tokens,
and the split between far and near (where the evidence goes) moves only when the cursor goes
to another line. The far prefix and the suffix are tokenized in blocks at fixed line numbers
(`cursor.py`), so their far edges stay put while the user types and their ids come from a
cache; a block that does not fit is dropped whole, from the far end.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfim.context.cursor import BlockCache, prefix_blocks, suffix_blocks, take_blocks
from deepfim.context.settings import PromptBudget

CHARS_PER_TOKEN = 6  # how far to look: code averages under 4 characters a token
MAX_NEAR_LINES = 12


@dataclass(frozen=True)
class CursorWindow:
    """Token ids of the three parts, and the texts retrieval queries with."""

    suffix_ids: list[int]
    far_ids: list[int]
    near_ids: list[int]
    far_text: str  # the text the far ids encode (its start may be cut)
    near_text: str  # the near prefix, ending at the cursor
    suffix_text: str
    far_cut: bool  # the prefix reaches further back than the far budget
    suffix_cut: bool

    @property
    def cursor_line(self) -> str:
        return self.near_text[self.near_text.rfind("\n") + 1 :]

    @property
    def lines_before(self) -> str:
        """Far and near prefix without the cursor's line: what evidence is chosen from."""
        text = self.far_text + self.near_text
        return text[: text.rfind("\n") + 1]


def split_near(cache: BlockCache, prefix: str, budget: int) -> int:
    """Offset in `prefix` where the near prefix starts (a line start)."""
    line_start = prefix.rfind("\n") + 1
    start, used = line_start, 0
    for _ in range(MAX_NEAR_LINES):
        if start == 0:
            break
        previous = prefix.rfind("\n", 0, start - 1) + 1
        line_ids = cache.ids([prefix[previous:start]])[0]
        if used + len(line_ids) > budget:
            break
        used += len(line_ids)
        start = previous
    return start


def cut_window(cache: BlockCache, prefix: str, suffix: str, budget: PromptBudget, quantum_lines: int) -> CursorWindow:
    """The window around a cursor between `prefix` and `suffix` (already redacted)."""
    split = split_near(cache, prefix, budget.near_prefix)
    near_text, before = prefix[split:], prefix[:split]
    near_ids = cache.ids([near_text])[0] if near_text else []
    reach = budget.far_prefix * CHARS_PER_TOKEN
    head = max(0, len(before) - reach)
    if head:
        head = before.find("\n", head) + 1 or len(before)
    far_source = before[head:]
    offset = before.count("\n", 0, head)
    q = max(1, min(quantum_lines, budget.far_prefix // 32 or 1))
    far_blocks = prefix_blocks(far_source, q, offset, complete=head == 0) if far_source else []
    far_ids, far_cut, far_text = take_blocks(cache, far_blocks, budget.far_prefix, from_end=True)
    s_reach = budget.suffix * CHARS_PER_TOKEN
    tail = len(suffix) if len(suffix) <= s_reach else suffix.rfind("\n", 0, s_reach) + 1
    s_source = suffix[:tail]
    first_line = prefix.count("\n")
    s_blocks = suffix_blocks(s_source, q, first_line, complete=tail == len(suffix)) if s_source else []
    suffix_ids, suffix_cut, suffix_text = take_blocks(cache, s_blocks, budget.suffix, from_end=False)
    return CursorWindow(
        suffix_ids, far_ids, near_ids, far_text, near_text, suffix_text,
        far_cut or head > 0 or len(far_text) < len(before), suffix_cut or tail < len(suffix),
    )  # fmt: skip
