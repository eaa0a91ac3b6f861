"""Index-aware decoding (`identifiers.py`) with the embedded model's real vocabulary and the
hints the context engine builds from the bundled example's real tree-sitter index.

The guarantee under test: after ``self.`` in a class whose members are known, whatever the
logits favour, the identifier the completion writes is one of the members — including when
every one of the model's top choices would invent a name. Where a new name is legitimate
(``self.x =`` starting a statement) nothing is forced.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from deepfim.context.prompt_builder import PromptSpec
from deepfim.context.settings import PromptBudget
from deepfim.context.workspace import Workspace
from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.api import NameHints
from deepfim.engine.model.config import ModelArgs
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.identifiers import IdentifierGuide, TokenShapes

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "shop"
CART = "shop/cart.py"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")


@pytest.fixture(scope="module")
def shapes(tok) -> TokenShapes:
    return TokenShapes(tok, ModelArgs.from_file(DEFAULT_MODEL_DIR).vocab_size)


def _hints_at(tmp_path_factory, tok, marker: str) -> tuple[NameHints, str]:
    """The hints the context engine gives a cursor just after `marker` in a method of Cart."""
    root = tmp_path_factory.mktemp("ids") / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    text = (root / CART).read_text()
    docstring = '        """The subtotal less the customer\'s loyalty discount."""\n'
    at = text.index(docstring) + len(docstring)
    prefix, suffix = text[:at] + marker, text[at:]
    ws = Workspace(root, cache_dir=root.parent / "cache")
    ws.scan()
    try:
        built = ws.prompt(tok, PromptSpec(budget=PromptBudget(repository=1024)), root / CART, prefix, suffix)
    finally:
        ws.close()
    return built.hints, prefix.rsplit("\n", 1)[-1]


@pytest.fixture(scope="module")
def member_hints(tmp_path_factory, tok):
    return _hints_at(tmp_path_factory, tok, "        return self.")


@pytest.fixture(scope="module")
def line_start_hints(tmp_path_factory, tok):
    """A cursor at the start of a statement: no receiver typed yet."""
    return _hints_at(tmp_path_factory, tok, "        ")


def _write_identifier(guide: IdentifierGuide, shapes: TokenShapes, line: str, logits_for, steps: int = 16) -> str:
    """Greedy steps under the guide until the identifier after the line's last dot ends."""
    text = line
    for step in range(steps):
        token = guide.choose(logits_for(step), text)
        text += shapes.text[token]
        tail = text[len(line) :]
        if tail and not (tail[-1].isalnum() or tail[-1] == "_"):
            break
    written = text[len(line) :]
    end = next((i for i, c in enumerate(written) if not (c.isalnum() or c == "_")), len(written))
    return written[:end]


def _spelling(tok: Tokenizer, shapes: TokenShapes, text: str):
    """Logits that favour, step by step, the tokens of `text` (its last token from then on)."""
    pieces = tok.encode(text)

    def logits(step: int) -> torch.Tensor:
        out = torch.zeros(len(shapes.text))
        out[pieces[min(step, len(pieces) - 1)]] = 10.0
        return out

    return logits


def test_the_context_engine_knows_the_members_of_self(member_hints):
    hints, _ = member_hints
    assert hints.receiver == "self" and not hints.defining
    assert {"items", "subtotal", "discounted_subtotal", "add"} <= set(hints.members)


@pytest.mark.parametrize("seed", range(40))
def test_random_logits_after_self_always_write_a_member(member_hints, shapes, seed):
    hints, line = member_hints
    guide = IdentifierGuide(shapes, hints)
    gen = torch.Generator().manual_seed(seed)
    vocab = len(shapes.text)
    name = _write_identifier(guide, shapes, line, lambda _: torch.randn(vocab, generator=gen) * 4)
    assert name in hints.members, f"wrote self.{name}"


@pytest.mark.parametrize("invented", ["_triviament", "_value", "total_price", "itemz"])
def test_logits_that_favour_an_invented_name_still_write_a_member(member_hints, shapes, tok, invented):
    """Every top choice spells the invented name (or is noise): the guide still lands on a member."""
    hints, line = member_hints
    guide = IdentifierGuide(shapes, hints)
    pieces = tok.encode(invented + "(")
    vocab = len(shapes.text)
    gen = torch.Generator().manual_seed(0)

    def logits(step: int) -> torch.Tensor:
        out = torch.randn(vocab, generator=gen)
        out[pieces[min(step, len(pieces) - 1)]] = 50.0
        return out

    name = _write_identifier(guide, shapes, line, logits)
    assert name in hints.members and name != invented


def test_a_member_the_model_prefers_is_kept(member_hints, shapes, tok):
    hints, line = member_hints
    guide = IdentifierGuide(shapes, hints)
    logits = _spelling(tok, shapes, "subtotal()")
    assert _write_identifier(guide, shapes, line, logits) == "subtotal"


def test_a_new_attribute_is_not_forced_onto_a_member(tmp_path_factory, tok, shapes):
    hints, line = _hints_at(tmp_path_factory, tok, "        self.")
    assert hints.receiver == "self" and hints.defining  # a statement may introduce an attribute
    guide = IdentifierGuide(shapes, hints)
    logits = _spelling(tok, shapes, "cache_key =")
    assert _write_identifier(guide, shapes, line, logits) == "cache_key"


def test_receivers_the_completion_writes_itself_are_known_too(line_start_hints):
    hints, _ = line_start_hints
    assert hints.receiver == ""  # nothing typed after a dot yet
    known = dict(hints.known)
    assert {"items", "subtotal", "discounted_subtotal", "add"} <= set(known["self"])
    assert {"apply_discount", "tax_for", "round_cents"} <= set(known["pricing"])  # `from shop import pricing`


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("written", ["return self.", "return pricing.apply_discount(self."])
def test_a_known_receiver_anywhere_in_the_completion_gets_a_member(line_start_hints, shapes, seed, written):
    hints, line = line_start_hints
    guide = IdentifierGuide(shapes, hints)
    gen = torch.Generator().manual_seed(seed)
    vocab = len(shapes.text)
    name = _write_identifier(guide, shapes, line + written, lambda _: torch.randn(vocab, generator=gen) * 4)
    assert name in dict(hints.known)["self"], f"wrote {written}{name}"


def test_a_statement_starting_with_self_may_add_an_attribute(line_start_hints, shapes, tok):
    hints, line = line_start_hints
    guide = IdentifierGuide(shapes, hints)
    logits = _spelling(tok, shapes, "cache_key =")
    assert _write_identifier(guide, shapes, line + "self.", logits) == "cache_key"


def test_a_class_with_unknown_bases_constrains_nothing(tmp_path, tok):
    from deepfim.context.members import enclosing_class

    text = "from lib import Base\n\n\nclass Child(Base):\n    def f(self):\n        return self.\n"
    scope = enclosing_class(text, "child.py", 5)
    assert scope is not None and not scope.complete  # Base's members are not listed here
    plain = enclosing_class(text.replace("(Base)", "(object)"), "child.py", 5)
    assert plain is not None and plain.complete


@pytest.mark.parametrize(
    "before, allowed",
    [
        ("        return Decimel", False),  # a use: the name must exist
        ("        return Decimal", True),
        ("        total = pricing.x + Decimel", False),
        ("        discount", True),  # a statement's first word: maybe a new variable
        ("    def Decimel", True),  # a definition
        ("        for Decimel", True),  # a loop target
        ("        f(Decimel", True),  # `=` follows: a keyword argument
    ],
)
def test_bare_names_are_checked_only_where_they_are_used(shapes, tok, before, allowed):
    guide = IdentifierGuide(shapes, NameHints(names=("Decimal", "pricing", "sum", "f")))
    follow = tok.encode("=" if before.endswith("f(Decimel") else "(")[0]
    assert guide.allows(before, follow) is allowed
