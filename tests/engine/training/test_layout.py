"""The training prompt layout (engine/training/layout.py): the cursor budget split, packing under a
token budget, context files ranked by what the cursor file imports."""

from __future__ import annotations

import pytest

from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.training.layout import pack_fim_prompt, rank_context_files, split_cursor_budget


def test_split_cursor_budget_gives_unused_space_to_the_other_side():
    assert split_cursor_budget(10, 10, 100) == (10, 10)
    assert split_cursor_budget(1000, 5, 100) == (95, 5)
    assert split_cursor_budget(5, 1000, 100) == (5, 95)
    assert split_cursor_budget(1000, 1000, 100) == (75, 25)


def test_pack_fim_prompt_fits_budget_and_cuts_the_last_context_file(tokenizer):
    sp = tokenizer.special
    prefix, suffix = tokenizer.encode("x = 1\n" * 50), tokenizer.encode("y = 2\n" * 50)
    context = [("a.py", tokenizer.encode("import os\n" * 30)), ("b.py", tokenizer.encode("import sys\n" * 300))]
    prompt = pack_fim_prompt(
        tokenizer, prefix, suffix, order=FimOrder.SPM, max_tokens=400, path="c.py", repo="r", context=context,
        cursor_tokens=120,
    )  # fmt: skip
    assert len(prompt) <= 400
    kinds = [s.kind for s in prompt.segments]
    assert kinds == ["header", "file", "file", "cursor_file", "suffix", "prefix"]
    last = prompt.segments[-1]
    assert prompt.ids[last.start : last.end] == prefix[-last.num_tokens :]  # SPM: the prefix is last
    assert prompt.ids.count(sp.file_end) == 2
    cursor = sum(s.num_tokens for s in prompt.segments if s.kind in ("prefix", "suffix")) - 3
    assert cursor == 120
    tight = pack_fim_prompt(tokenizer, prefix, suffix, order=FimOrder.PSM, max_tokens=200, context=context)
    assert [s.kind for s in tight.segments] == ["header", "prefix", "suffix"]  # the cursor file took it all
    with pytest.raises(ValueError, match="max_tokens"):
        pack_fim_prompt(tokenizer, prefix, suffix, order=FimOrder.PSM, max_tokens=2, path="c.py")


def test_rank_context_files_puts_named_modules_first():
    ranked = rank_context_files(
        "p/main.py", "from helpers import x\n", [("p/z.py", 1), ("p/helpers.py", 2), ("p/main.py", 3)]
    )
    assert [p for p, _ in ranked] == ["p/helpers.py", "p/z.py"]
