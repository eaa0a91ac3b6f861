"""Packing: budgets, the exact token layout of engine/model/prompt_format.py, summaries, determinism."""

from __future__ import annotations

import pytest
from ctx_fixtures import write_tree

from deepfim.context.packer import BudgetError
from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt, file_segment_ids

BIG = "".join(f"def helper_{i}(x: int) -> int:\n    return x * {i} + len(str(x))\n\n\n" for i in range(300))
REPO = {
    "pkg/__init__.py": "",
    "pkg/core.py": (
        "from pkg.small import tiny\nfrom pkg.big import helper_7\n\n\ndef main():\n    return tiny() + helper_7(2)\n"
    ),
    "pkg/small.py": "def tiny():\n    return 1\n",
    "pkg/big.py": BIG,
    "other/unrelated.py": "def lonely():\n    return 0\n",
}


@pytest.fixture
def repo(tmp_path):
    return write_tree(tmp_path / "repo", REPO)


def _cursor(root, rel="pkg/core.py", marker="return tiny"):
    text = (root / rel).read_text()
    at = text.index(marker)
    return root / rel, text[:at], text[at:]


def _check_segments(prompt, budget):
    assert 0 < len(prompt) <= budget
    assert prompt.segments[0].kind == "header" and prompt.segments[0].start == 0
    for a, b in zip(prompt.segments, prompt.segments[1:], strict=False):
        assert a.end == b.start  # contiguous, covering every token
    assert prompt.segments[-1].end == len(prompt)


@pytest.mark.parametrize("budget", [64, 200, 1000, 4096, 100_000])
def test_every_budget_is_respected(repo, make_workspace, tok, budget):
    ws = make_workspace(repo)
    result = ws.pack(tok, *_cursor(repo), budget)
    _check_segments(result.prompt, budget)
    kinds = [s.kind for s in result.prompt.segments]
    assert kinds[-3:] == ["cursor_file", "prefix", "suffix"]


def test_a_roomy_budget_packs_files_whole_in_the_exact_layout(repo, make_workspace, tok):
    ws = make_workspace(repo)
    path, prefix, suffix = _cursor(repo)
    result = ws.pack(tok, path, prefix, suffix, 100_000, repo_name="demo")
    files = [(inc.path, (repo / inc.path).read_text()) for inc in result.included]
    assert {p for p, _ in files} == {"pkg/small.py", "pkg/big.py", "other/unrelated.py"}
    assert all(inc.form == "whole" for inc in result.included)
    expected = build_fim_prompt(tok, prefix, suffix, FimOrder.PSM, "pkg/core.py", files, "demo")
    assert result.prompt.ids == expected.ids
    for inc, (p, text) in zip(result.included, files, strict=True):
        assert result.prompt.ids[inc.start : inc.end] == file_segment_ids(tok, p, tok.encode(text))


def test_a_file_too_big_for_the_budget_is_packed_as_its_summary(repo, make_workspace, tok):
    ws = make_workspace(repo)
    result = ws.pack(tok, *_cursor(repo), 8000)
    forms = {inc.path: inc.form for inc in result.included}
    assert forms["pkg/small.py"] == "whole" and forms["pkg/big.py"] == "summary"
    seg = next(s for s in result.prompt.segments if s.path == "pkg/big.py")
    assert seg.kind == "summary"
    text = tok.decode(result.prompt.ids[seg.start : seg.end])
    assert "def helper_7(x: int) -> int: ..." in text and "return x * 7" not in text


def test_the_cursor_file_is_cut_far_from_the_cursor_when_the_budget_is_tiny(tmp_path, make_workspace, tok):
    lines = [f"value_{i} = {i}\n" for i in range(2000)]
    text = "".join(lines)
    at = text.index("value_1000 = ")
    root = write_tree(tmp_path / "r", {"big.py": text})
    ws = make_workspace(root)
    result = ws.pack(tok, root / "big.py", text[:at], text[at:], 300)
    assert len(result.prompt) <= 300 and result.prefix_truncated and result.suffix_truncated
    seg = {s.kind: s for s in result.prompt.segments}
    before = tok.decode(result.prompt.ids[seg["prefix"].start + 1 : seg["prefix"].end])  # after <fim_begin>
    after = tok.decode(result.prompt.ids[seg["suffix"].start + 1 : seg["suffix"].end - 1])  # inside hole..end
    assert text[:at].endswith(before) and before.startswith("value_")  # whole lines nearest the cursor
    assert text[at:].startswith(after) and after.endswith("\n")
    assert len(before) > 2 * len(after)  # about three quarters for the prefix


def test_spm_puts_the_prefix_last(repo, make_workspace, tok):
    ws = make_workspace(repo)
    path, prefix, suffix = _cursor(repo)
    result = ws.pack(tok, path, prefix, suffix, 4096, order=FimOrder.SPM)
    kinds = [s.kind for s in result.prompt.segments]
    assert kinds[-3:] == ["cursor_file", "suffix", "prefix"]
    assert result.prompt.order is FimOrder.SPM
    assert result.prompt.ids[-len(tok.encode(prefix)) :] == tok.encode(prefix)


def test_packing_is_deterministic_across_workspaces(repo, tmp_path, make_workspace, tok):
    from deepfim.context.workspace import Workspace

    cursor = _cursor(repo)
    first = make_workspace(repo).pack(tok, *cursor, 2000)
    other = Workspace(repo, cache_dir=tmp_path / "other-cache")
    other.scan()
    second = other.pack(tok, *cursor, 2000)
    again = other.pack(tok, *cursor, 2000)
    assert first.prompt.ids == second.prompt.ids == again.prompt.ids
    assert first.prompt.segments == second.prompt.segments


def test_bad_budgets_are_rejected_with_their_value(repo, make_workspace, tok):
    ws = make_workspace(repo)
    with pytest.raises(BudgetError, match="budget 10 is too small"):
        ws.pack(tok, *_cursor(repo), 10)
    with pytest.raises(ValueError, match="got 0"):
        ws.pack(tok, *_cursor(repo), 0)
    with pytest.raises(ValueError, match="'xyz'"):
        ws.pack(tok, *_cursor(repo), 4096, order="xyz")


def test_a_cursor_file_outside_the_workspace_is_still_packed(repo, make_workspace, tok, tmp_path):
    ws = make_workspace(repo)
    result = ws.pack(tok, tmp_path / "scratch.py", "from pkg.small import tiny\nx = ", "\n", 4096)
    assert result.cursor_path == "scratch.py"
    assert "pkg/small.py" in {inc.path for inc in result.included}
