"""Typing-through: the rest of a suggestion is served while the user types it."""

from deepfim.lsp_server.runs import Anchor
from deepfim.lsp_server.typing_cache import TypingCache

PREFIX, SUFFIX = "total = comp", "\nprint(total)\n"


def _cache() -> TypingCache:
    cache = TypingCache()
    cache.store("u", Anchor.at(PREFIX, SUFFIX), "ute(items)", "s1")
    return cache


def test_typed_characters_of_the_suggestion_are_served_from_the_cache():
    cache = _cache()
    hit = cache.lookup("u", PREFIX + "ut", SUFFIX)
    assert hit is not None and hit.remaining == "e(items)" and hit.suggestion_id == "s1"
    # backspacing over typed characters still matches the anchor
    assert cache.lookup("u", PREFIX + "u", SUFFIX).remaining == "te(items)"
    assert cache.stats()["hits"] == 2


def test_divergent_typing_changed_suffix_or_other_document_miss():
    cache = _cache()
    assert cache.lookup("u", PREFIX + "x", SUFFIX) is None  # typed something else
    assert cache.lookup("u", PREFIX + "ut", SUFFIX + "# edit\n") is None  # suffix changed
    assert cache.lookup("u", "other = comp" + "ut", SUFFIX) is None  # text before the anchor changed
    assert cache.lookup("v", PREFIX + "ut", SUFFIX) is None
    assert cache.lookup("u", PREFIX + "ute(items)", SUFFIX) is None  # fully typed: nothing left
    assert cache.lookup("u", PREFIX[:-1], SUFFIX) is None  # deleted past the anchor
    assert cache.stats()["misses"] == 6


def test_forget():
    cache = _cache()
    cache.forget("u")
    assert cache.lookup("u", PREFIX + "u", SUFFIX) is None


def test_a_suggestion_shown_before_its_end_goes_on_as_written():
    cache = _cache()
    assert cache.lookup("u", PREFIX + "ute(items)", SUFFIX) is None  # all of what was shown, accepted
    assert not cache.extend("u", "s2", "ute(items)\nprint(1)")  # another suggestion's rest
    assert not cache.extend("u", "s1", "ute(other)\n")  # not going on from what was shown
    assert cache.extend("u", "s1", "ute(items)\nreturn total")
    assert cache.lookup("u", PREFIX + "ute(items)", SUFFIX).remaining == "\nreturn total"
