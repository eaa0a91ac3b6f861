"""The one prompt builder (context/prompt_builder.py) through the real Workspace: layouts,
context levels, and what typing, a new line, another file or an edit elsewhere change.

The engine reuses its state for the longest unchanged token prefix, so the stability tests
compare token ids, not text.
"""

from __future__ import annotations

import random

import pytest
from ctx_fixtures import write_tree

from deepfim.context.cursor import BlockCache, prefix_blocks, suffix_blocks, take_blocks
from deepfim.context.prompt_builder import ContextLevel, Layout, PromptSpec
from deepfim.context.settings import PromptBudget
from deepfim.engine.model.prompt_format import FimOrder

CART = (
    "from shop import pricing\n"
    "from shop.models import Item\n\n\n"
    "class Cart:\n"
    "    def __init__(self, owner: str) -> None:\n"
    "        self.owner = owner\n"
    "        self.items: list[Item] = []\n\n"
    "    def subtotal(self) -> float:\n"
    "        return sum(item.price for item in self.items)\n\n"
    "    def total(self) -> float:\n"
    "        goods = self.subtotal()\n"
)
REPO = {
    "shop/__init__.py": "",
    "shop/models.py": (
        "class Item:\n    def __init__(self, name: str, price: float) -> None:\n        self.price = price\n"
    ),
    "shop/pricing.py": (
        "RATE = 0.2\n\n\ndef tax_for(amount: float, region: str) -> float:\n    return amount * RATE\n\n\n"
        "def round_cents(amount: float) -> float:\n    return round(amount, 2)\n"
    ),
    "shop/cart.py": CART + "        return pricing.round_cents(goods)\n",
    "shop/report.py": "def report(cart):\n    return f'{cart.owner}: {cart.total()}'\n",
}
WINDOW = PromptSpec(Layout.WINDOW, FimOrder.SPM, PromptBudget(repository=4096))
# a window too small for the whole of shop/cart.py: its copy comes into play
NARROW = PromptSpec(budget=PromptBudget(repository=4096, suffix=16, far_prefix=48, evidence=96, near_prefix=24))


@pytest.fixture
def ws(tmp_path, make_workspace):
    return make_workspace(write_tree(tmp_path / "repo", REPO))


def _kinds(built):
    return [(s.kind, s.path) for s in built.prompt.segments]


def test_window_layout_puts_evidence_between_the_far_and_the_near_prefix(ws, tok):
    prefix = CART + "        return pricing."
    built = ws.prompt(tok, WINDOW, ws.root / "shop/cart.py", prefix, "\n", "shop")
    kinds = [k for k, _ in _kinds(built)]
    assert kinds[0] == "header" and "file" in kinds and kinds[-1] == "prefix"
    fim = kinds.index("cursor_file")
    assert kinds[fim:] == ["cursor_file", "suffix", "prefix", *(["evidence"] * len(built.evidence)), "prefix"]
    last_evidence = built.evidence[-1]  # most useful nearest the cursor: the members of `pricing`
    assert last_evidence.kind == "members" and last_evidence.path == "shop/pricing.py"
    assert "def round_cents(amount: float) -> float" in last_evidence.text
    assert built.hints.receiver == "pricing" and set(built.hints.members) >= {"tax_for", "round_cents", "RATE"}
    near = built.prompt.segments[-1]
    assert tok.decode(built.prompt.ids[near.start : near.end]).endswith("        return pricing.")


def test_the_head_is_handed_over_before_the_evidence_and_is_the_prompts_start(ws, tok):
    """`on_head` gets the prompt up to the far prefix (the engine prefills it while the evidence
    is gathered); the whole prompt starts with exactly those ids and resumes at their end."""
    heads = []

    def keep(ids, anchors, has_copy):  # the prompt's own list, growing after the call: a copy
        heads.append((list(ids), anchors, has_copy))

    prefix = CART + "        return pricing."
    path = ws.root / "shop/cart.py"
    built = ws.prompt(tok, WINDOW, path, prefix, "\n", "shop", on_head=keep)
    [(ids, anchors, has_copy)] = heads
    far = next(s for s in built.prompt.segments if s.kind == "prefix")
    assert built.head_end == far.end == len(ids) and built.prompt.ids[: len(ids)] == ids
    assert anchors == (built.shared_tokens, len(ids)) and not has_copy
    assert built.anchors() == anchors and len(built.evidence) > 0
    spec = PromptSpec(Layout.FILES, FimOrder.PSM, PromptBudget(repository=4096))
    files = ws.prompt(tok, spec, path, prefix, "\n", "shop", on_head=keep)
    assert len(heads) == 1 and files.head_end is None  # the files layout has no head before its evidence


def test_files_layout_is_deepseeks_repository_fim(ws, tok):
    spec = PromptSpec(Layout.FILES, FimOrder.PSM, PromptBudget(repository=4096))
    built = ws.prompt(tok, spec, ws.root / "shop/cart.py", CART, "", "shop")
    kinds = [k for k, _ in _kinds(built)]
    assert kinds[-3:] == ["cursor_file", "prefix", "suffix"] and "evidence" in kinds
    assert kinds.index("evidence") < kinds.index("cursor_file")
    with pytest.raises(ValueError, match="SPM"):
        PromptSpec(Layout.WINDOW, FimOrder.PSM)


def test_context_levels(ws, tok):
    path, prefix = ws.root / "shop/cart.py", CART + "        return self."
    for level, has_repository, has_evidence in [
        (ContextLevel.NONE, False, False),
        (ContextLevel.FILE, False, True),
        (ContextLevel.REPOSITORY, True, True),
    ]:
        built = ws.prompt(tok, PromptSpec(budget=NARROW.budget, level=level), path, prefix, "\n")
        kinds = {k for k, _ in _kinds(built)}
        assert ("file" in kinds) == has_repository and bool(built.evidence) == has_evidence, level
        if level is ContextLevel.FILE:
            assert {e.path for e in built.evidence} == {"shop/cart.py"}  # nothing from other files
            assert "cursor_copy" in kinds  # the file as a whole, since no repository part shows it
    assert set(built.hints.members) >= {"owner", "items", "subtotal", "total"}


def test_the_repository_part_is_the_same_for_every_cursor_file(ws, tok):
    a = ws.prompt(tok, WINDOW, ws.root / "shop/cart.py", CART, "")
    b = ws.prompt(tok, WINDOW, ws.root / "shop/report.py", "def report(cart):\n    return ", "\n")
    assert a.shared_tokens == b.shared_tokens > 200
    assert a.prompt.ids[: a.shared_tokens] == b.prompt.ids[: b.shared_tokens]
    paths = [f.rel for f in a.repository.files]
    assert paths == sorted(paths)


def test_typing_on_a_line_only_appends_tokens(ws, tok):
    path, before = ws.root / "shop/cart.py", CART + "        return pricing.round"
    first = ws.prompt(tok, WINDOW, path, before, "\n")
    second = ws.prompt(tok, WINDOW, path, before + "_cents(go", "\n")
    n = len(first.prompt.ids)
    assert second.prompt.ids[: n - 3] == first.prompt.ids[: n - 3]  # the last tokens re-tokenize
    assert len(second.prompt.ids) > n


def test_an_edited_file_leaves_the_part_and_comes_back_as_a_fixed_copy(ws, tok):
    path = ws.root / "shop/cart.py"
    part = ws.repository_part(tok, 4096)
    assert part.contains("shop/cart.py")
    ws.update_buffer(path, CART)  # edited in the editor
    ws.snapshot_copy(path)
    refreshed = ws.repository_part(tok, 4096, refresh=True)
    assert not refreshed.contains("shop/cart.py") and refreshed.contains("shop/models.py")
    one = ws.prompt(tok, NARROW, path, CART, "", repository=refreshed)
    two = ws.prompt(tok, NARROW, path, CART + "        return goods", "", repository=refreshed)
    copy = next(s for s in one.prompt.segments if s.kind == "cursor_copy")
    assert one.prompt.ids[: copy.end] == two.prompt.ids[: copy.end]  # typing leaves the copy alone
    assert "return pricing.round_cents" not in tok.decode(one.prompt.ids[copy.start : copy.end])


def test_without_its_copy_a_prompt_is_the_part_then_the_window(ws, tok):
    """What the language server sends while the engine does not hold a copy: the same ids with
    the copy cut out, every later segment moved back by its length."""
    path = ws.root / "shop/cart.py"
    ws.update_buffer(path, CART)
    part = ws.repository_part(tok, 4096, refresh=True)  # the edited file left out: a copy
    built = ws.prompt(tok, NARROW, path, CART, "", repository=part)
    copy = next(s for s in built.prompt.segments if s.kind == "cursor_copy")
    assert built.copy_end() == copy.end
    cut = built.without_copy()
    assert cut.copy_end() is None and built.copy_end() == copy.end  # the original is left as it was
    assert cut.prompt.ids == built.prompt.ids[: copy.start] + built.prompt.ids[copy.end :]
    moved = [(s.kind, s.path, s.start, s.end) for s in built.prompt.segments if s is not copy]
    n = copy.num_tokens
    assert [(s.kind, s.path, s.start, s.end) for s in cut.prompt.segments] == [
        (k, p, a - n * (a >= copy.end), b - n * (a >= copy.end)) for k, p, a, b in moved
    ]
    assert cut.shared_tokens == copy.start and cut.anchors() == (copy.start, built.head_end - n)
    assert tok.decode(cut.prompt.ids[cut.shared_tokens :]) == tok.decode(built.prompt.ids[copy.end :])
    assert cut.without_copy() is cut


def test_a_copy_not_wanted_is_left_out_untokenized(ws, tok):
    """`copy_wanted` is asked with the copy's text before it is tokenized: the language server
    leaves out a copy the engine does not hold; the prompt is then exactly `without_copy`'s."""
    path = ws.root / "shop/cart.py"
    ws.update_buffer(path, CART)
    part = ws.repository_part(tok, 4096, refresh=True)
    asked = []
    whole = ws.prompt(tok, NARROW, path, CART, "", repository=part)
    left_out = ws.prompt(tok, NARROW, path, CART, "", repository=part, copy_wanted=lambda t: asked.append(t) and False)
    assert asked == [CART] == [whole.copy_text] and left_out.copy_text == CART
    assert left_out.copy_end() is None and left_out.prompt.ids == whole.without_copy().prompt.ids
    assert [(s.kind, s.start, s.end) for s in left_out.prompt.segments] == [
        (s.kind, s.start, s.end) for s in whole.without_copy().prompt.segments
    ]
    kept = ws.prompt(tok, NARROW, path, CART, "", repository=part, copy_wanted=lambda t: True)
    assert kept.prompt.ids == whole.prompt.ids
    in_part = ws.prompt(tok, NARROW, ws.root / "shop/models.py", "class Item:\n", "", repository=part,
                        copy_wanted=lambda t: asked.append(t))  # fmt: skip
    assert len(asked) == 1 and in_part.copy_text is None  # the part shows it: no copy to ask about


def test_an_edit_in_an_unrelated_file_does_not_change_the_served_part(ws, tok):
    served = ws.repository_part(tok, 4096)
    ws.update_buffer(ws.root / "shop/pricing.py", REPO["shop/pricing.py"] + "\n\ndef extra():\n    pass\n")
    assert ws.repository_part(tok, 4096) is served  # kept until a refresh asks for a new one
    assert ws.repository_part(tok, 4096, refresh=True).key != served.key


def test_block_tokenization_equals_tokenizing_the_whole_text(tok):
    # the window's far prefix and suffix are tokenized in cached blocks; joined, they must be
    # the canonical ids of their text
    text = (
        "import os\n\n\nclass A:\n    def f(self):\n\n        return 1\n\n\n\n" * 20
        + "x = {'a': [1, 2, 3]}\n\t\ty = '''\n\n'''\n" * 10
    )
    rng = random.Random(7)
    cache = BlockCache(tok)
    for _ in range(25):
        at = rng.randrange(len(text) + 1)
        before, after = text[:at], text[at:]
        p_ids, p_cut, p_text = take_blocks(cache, prefix_blocks(before, 4, 0, True), 10**6, from_end=True)
        s_ids, s_cut, s_text = take_blocks(cache, suffix_blocks(after, 4, before.count("\n"), True), 10**6, False)
        assert (p_ids, p_cut, p_text) == (tok.encode(before), False, before)
        assert (s_ids, s_cut, s_text) == (tok.encode(after), False, after)


def test_the_window_parts_keep_to_their_budgets(ws, tok):
    long = "x = 1\n" * 2000
    budget = PromptBudget(repository=0, cursor_file=64, suffix=32, far_prefix=100, evidence=50, near_prefix=20)
    built = ws.prompt(tok, PromptSpec(budget=budget), ws.root / "shop/big.py", long + "y = ", "\n" + long)
    w = built.window
    assert len(w.suffix_ids) <= 32 and len(w.far_ids) <= 100 and w.far_cut and w.suffix_cut
    assert len(w.near_ids) <= 20 + len(tok.encode("y = "))
    copy = next(s for s in built.prompt.segments if s.kind == "cursor_copy")
    assert copy.num_tokens <= 64


def test_the_sliding_similarity_window_scores_as_the_union_of_its_lines_would():
    """similar_window.best_window scores every window at once from identifier occurrences; the
    definition it keeps is the Jaccard similarity of the query with the union of `width` lines
    (the first of equals), skipping windows that overlap the lines the prompt shows already."""
    import random

    from deepfim.context.similar_window import Occurrences, best_window

    rng = random.Random(7)
    names = [f"n{i}" for i in range(12)]
    for _ in range(400):
        idents = [frozenset(rng.sample(names, rng.randint(0, 4))) for _ in range(rng.randint(0, 30))]
        query = frozenset(rng.sample(names, rng.randint(2, 6)))
        width = rng.randint(2, 6)
        skip = rng.choice([(-1, -1), (rng.randint(0, 20), rng.randint(0, 30))])
        best, best_at = 0.0, -1
        for i in range(len(idents) - width + 1):
            if skip[0] - width < i <= skip[1]:
                continue
            window = frozenset().union(*idents[i : i + width])
            shared = len(query & window)
            if shared and shared / (len(query) + len(window) - shared) > best:
                best, best_at = shared / (len(query) + len(window) - shared), i
        assert best_window(Occurrences.of(idents), query, width, skip) == (best, best_at)
