"""Prefix stability: what a keystroke, a cursor move or an edit elsewhere changes in the prompt.

The engine reuses its state for the longest unchanged token prefix, so these tests compare
token ids, not text: an edit in one file must leave every segment before that file as is.
"""

from __future__ import annotations

import pytest
from ctx_fixtures import write_tree

from deepfim.context.cursor import BlockCache, fit_cursor

CORE = (
    "from lib import alpha, beta, gamma, delta\n\n\n"
    "def run(x):\n    total = alpha.a(x) + beta.b(x)\n    return total + gamma.g(x) + delta.d(x)\n"
)
REPO = {
    "lib/__init__.py": "",
    **{
        f"lib/{n}.py": f"def {n[0]}(x):\n    return x + {i}\n"
        for i, n in enumerate(["alpha", "beta", "gamma", "delta"])
    },
    "main/core.py": CORE,
}


def _common_prefix(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _segments(result):
    return [(s.kind, s.path, tuple(result.prompt.ids[s.start : s.end])) for s in result.prompt.segments]


@pytest.fixture
def setup(tmp_path, make_workspace, tok):
    root = write_tree(tmp_path / "repo", REPO)
    ws = make_workspace(root)
    at = CORE.index("return total")

    def pack(prefix_extra: str = "", cursor: int = at):
        return ws.pack(tok, root / "main/core.py", CORE[:cursor] + prefix_extra, CORE[cursor:], 8192)

    return root, ws, pack, tok


def test_an_edit_changes_only_segments_from_that_file_on(setup):
    root, ws, pack, tok = setup
    before = pack()
    paths = [inc.path for inc in before.included]
    assert paths == ["lib/alpha.py", "lib/beta.py", "lib/delta.py", "lib/gamma.py"]  # stable: by path
    victim = before.included[1]  # lib/beta.py
    (root / victim.path).write_text("def b(x):\n    return x * 100\n")
    ws.scan()
    after = pack()
    # everything before the edited file's old position is token-identical ...
    assert _common_prefix(before.prompt.ids, after.prompt.ids) >= victim.start
    assert _segments(before)[:2] == _segments(after)[:2]
    # ... and the edited file moved to the end of the context (the volatile tail)
    assert [inc.path for inc in after.included] == ["lib/alpha.py", "lib/delta.py", "lib/gamma.py", "lib/beta.py"]
    assert after.included[-1].tier == "edited"

    # editing it again changes nothing before it: its segment is already last
    moved = after.included[-1]
    ws.update_buffer(root / victim.path, "def b(x):\n    return x * 200\n")
    again = pack()
    assert _common_prefix(after.prompt.ids, again.prompt.ids) >= moved.start
    last = again.included[-1]
    assert last.path == victim.path and "x * 200" in tok.decode(again.prompt.ids[last.start : last.end])


def test_typing_at_the_cursor_keeps_every_context_segment(setup):
    pack = setup[2]
    base = pack()
    for typed in ("t", "to", "tot", "tota", "total"):
        now = pack(typed)
        assert _segments(now)[:-2] == _segments(base)[:-2]  # header, context files, cursor header
        assert now.stable_tokens == base.stable_tokens
        prefix_seg = next(s for s in now.prompt.segments if s.kind == "prefix")
        # PSM: the prefix segment is the base prefix plus what was typed (tokens may merge at the end)
        assert _common_prefix(base.prompt.ids, now.prompt.ids) >= prefix_seg.start + 1


def test_moving_the_cursor_keeps_the_stable_tiers(setup):
    pack = setup[2]
    first = pack(cursor=CORE.index("total = "))
    second = pack(cursor=CORE.index("+ delta"))
    assert first.stable_tokens == second.stable_tokens
    assert first.prompt.ids[: first.stable_tokens] == second.prompt.ids[: second.stable_tokens]


def test_block_tokenization_equals_tokenizing_the_whole_text(tok):
    # the cursor window is tokenized in cached blocks; joined, they must be the canonical ids
    import random

    text = (
        "import os\n\n\nclass A:\n    def f(self):\n\n        return 1\n\n\n\n" * 20
        + "x = {'a': [1, 2, 3]}\n\t\ty = '''\n\n'''\n" * 10
    )
    rng = random.Random(7)
    cache = BlockCache(tok)
    for _ in range(25):
        at = rng.randrange(len(text) + 1)
        p_ids, s_ids, p_cut, s_cut = fit_cursor(cache, text[:at], text[at:], 10**6, 4, 10**7)
        assert (p_ids, s_ids, p_cut, s_cut) == (tok.encode(text[:at]), tok.encode(text[at:]), False, False)
