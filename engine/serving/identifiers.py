"""Index-aware decoding: where the model writes an identifier, prefer names that exist.

The context package tells the engine what exists at the cursor (`api.NameHints`): the
members of the receiver being typed, the receivers the completion may write itself (``self``
in a class whose bases add nothing unknown, the modules the file imports) with everything
each offers, and the names of the file, the workspace and the language. While the completion
writes an identifier:

* after ``receiver.`` with known members, wherever in the completion it comes
  (``return self.``, ``pricing.``): every step keeps the identifier a prefix of a member, and
  it may only end on a member. Not where a new member is legitimate: a statement that starts
  ``self.`` (``self.x = ...``);
* a bare name in a *use* position (after ``(``, ``,``, an operator, ``return``...): it may
  only end on a name that exists, unless ``=`` follows (a keyword argument or a new
  variable). Assignment targets, parameters and definitions are never in a use position.

The candidates are the model's own top choices, best first, and the best allowed one wins.
After a known receiver the check is a guarantee: when none of the top choices is allowed, the
best-scored first token of a member's remaining text is taken, so the completion never writes
a member that does not exist. For bare names it is a bias: when none of the top choices is
allowed the model's choice stands (a name the hints do not know may still be right).
Decoded token texts are computed once per vocabulary (`TokenShapes`); each check looks only
at the identifiers the candidate token grows or completes.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import torch

from deepfim.engine.api import NameHints
from deepfim.engine.model.tokenizer import Tokenizer

TOP_K = 16
_IDENT = re.compile(r"[^\W\d]\w*$")  # identifiers as Python reads them (Unicode letters too)
_WORD = re.compile(r"(?<!\w)[^\W\d]\w*")
_NAME_START = re.compile(r"[^\W\d]")
_RECEIVER_AT_END = re.compile(r"(?<![\w.])([^\W\d]\w*)\.$")  # `self.`, `pricing.`, not `a.b.`
USE_AFTER_CHARS = set("([{,=+-*/%<>!&|^~")
_DEFINING = re.compile(r"\s*(async\s+)?(def|class|lambda|import|from|for|except|with|global|nonlocal)\b|.*\bas\s*$")
USE_AFTER_WORDS = {"return", "yield", "await", "if", "elif", "while", "and", "or", "not", "in", "is", "assert", "del"}


class TokenShapes:
    """Every token's decoded text (special tokens: empty)."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int) -> None:
        special = tokenizer.special_id_set
        self.text = ["" if i in special else tokenizer.decode([i]) for i in range(vocab_size)]
        self.encode = tokenizer.encode
        # tokens that end an identifier written before them (their text starts with another character)
        self.breaks = torch.tensor([bool(t) and not (t[0].isalnum() or t[0] == "_") for t in self.text])


@dataclass
class _Names:
    """Sorted names with prefix lookups."""

    sorted_names: list[str]
    members: frozenset[str]

    def has_prefix(self, prefix: str) -> bool:
        i = bisect.bisect_left(self.sorted_names, prefix)
        return i < len(self.sorted_names) and self.sorted_names[i].startswith(prefix)


class IdentifierGuide:
    """The check for one request (its hints) over one vocabulary's token shapes."""

    def __init__(self, shapes: TokenShapes, hints: NameHints) -> None:
        self.shapes = shapes
        self.hints = hints
        self.members = _Names(sorted(hints.members), frozenset(hints.members))
        self.known = {name: _Names(sorted(found), frozenset(found)) for name, found in hints.known}
        self.names = frozenset(hints.names)
        self.rejected = 0  # candidates turned down (statistics)

    def choose(self, logits: torch.Tensor, text: str) -> int:
        """The best of the model's top candidates that the check allows after `text`."""
        top = torch.topk(logits, min(TOP_K, logits.shape[-1])).indices.tolist()
        for token in top:
            if self.allows(text, token):
                return token
        continuations = self._member_continuations(text, logits)
        if continuations:
            return max(continuations, key=lambda t: float(logits[t]))
        return top[0]

    def _member_continuations(self, text: str, logits: torch.Tensor) -> list[int]:
        """After ``receiver.partial`` with known members: the first token of each member's rest."""
        match = _IDENT.search(text)
        partial = match.group(0) if match else ""
        members = self._after_receiver(text[: len(text) - len(partial)])
        if members is None:
            return []
        out = set()
        if partial in members.members:  # it may end here: the best token that ends it
            out.add(int(torch.where(self.shapes.breaks, logits, float("-inf")).argmax()))
        for member in members.sorted_names:
            if member.startswith(partial) and member != partial:
                ids = self.shapes.encode(member[len(partial) :])
                if ids and self.allows(text, ids[0]):
                    out.add(ids[0])
        return sorted(out)

    def allows(self, text: str, token: int) -> bool:
        """Whether every identifier that `token` grows or completes after `text` may be there."""
        piece = self.shapes.text[token]
        if not piece:
            return True
        match = _IDENT.search(text)
        start = match.start() if match else len(text)
        if not match and not _NAME_START.match(piece) and self._after_receiver(text) is not None:
            return False  # `self.` must be followed by a member, not by `(` or a space
        joined = text + piece
        for word in _WORD.finditer(joined, start):
            if word.end() < len(text):
                continue  # complete before this token: already accepted
            ends = word.end() < len(joined)
            following = joined[word.end()] if ends else ""
            if not self._allowed(joined[: word.start()], word.group(0), ends, following):
                return False
        return True

    def _after_receiver(self, before: str) -> _Names | None:
        """What a name starting after `before` must be one of: the members of the receiver
        before the dot, when that receiver is known in full; None when any name may come."""
        h = self.hints
        if h.receiver and before.endswith(h.receiver + "."):  # the one being typed at the cursor
            return self.members if h.members and not h.defining else None
        found = _RECEIVER_AT_END.search(before)
        if found is None or found.group(1) not in self.known:
            return None
        name = found.group(1)
        if name in ("self", "cls", "this") and before.rsplit("\n", 1)[-1].strip() == name + ".":
            return None  # a statement starting `self.` may give the object a new attribute
        return self.known[name]

    def _allowed(self, before: str, word: str, ends: bool, following: str) -> bool:
        members = self._after_receiver(before)
        if members is not None:
            if ends:
                return word in members.members
            return members.has_prefix(word)
        if not ends or not self.names or following == "=":
            return True
        if not _use_position(before):
            return True
        if word in self.names:
            return True
        self.rejected += 1
        return False


def _use_position(before: str) -> bool:
    """Whether a name starting after `before` is being used (so must exist), not introduced."""
    line = before.rsplit("\n", 1)[-1]
    stripped = line.rstrip()
    if not stripped:
        return False  # a statement's first word: maybe an assignment target
    if _DEFINING.match(line):
        return False  # parameters, names after `as`, import lists, loop targets
    if stripped.endswith("."):
        return False  # an attribute of an unknown receiver
    if stripped[-1] in USE_AFTER_CHARS:
        if stripped.endswith("->"):
            return True
        if stripped[-1] == "=" and not stripped.endswith(("==", "!=", "<=", ">=")):
            return True  # the value side of an assignment or a default
        if stripped.endswith(("def", "class")):
            return False
        return stripped[-1] != "," or "(" in line or "[" in line
    words = stripped.split()
    return bool(words) and words[-1] in USE_AFTER_WORDS
