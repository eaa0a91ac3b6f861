"""Definitions, imports and summaries from the real tree-sitter grammars, one case per language."""

from __future__ import annotations

import pytest
from ctx_fixtures import POLYGLOT

from deepfim.context.extract import extract
from deepfim.context.languages import PARSED_LANGUAGES, language_for, query

# file -> (definitions that must be found as (kind, name), import specs that must be found)
EXPECTED = {
    "py/app/models.py": ({("class", "User"), ("method", "display_name"), ("function", "make_user")}, set()),
    "py/app/service.py": ({("function", "register")}, {"app.models", "app.models.make_user", ".util"}),
    "web/src/math.js": ({("function", "add"), ("class", "Calc"), ("method", "total")}, set()),
    "web/src/index.js": ({("function", "main")}, {"./math.js", "./fmt"}),
    "web/src/types.ts": ({("interface", "Point"), ("type", "Id"), ("enum", "Color")}, set()),
    "web/src/geo.ts": ({("class", "Circle"), ("method", "area"), ("function", "distance")}, {"./types"}),
    "web/src/App.tsx": ({("type", "Props"), ("function", "Header"), ("function", "App")}, {"./geo"}),
    "go/cart/cart.go": ({("type", "Cart"), ("method", "Total")}, {"fmt", "example.com/shop/pricing"}),
    "rust/src/geometry.rs": (
        {("struct", "Point"), ("trait", "Shape"), ("method", "area"), ("impl", "Point"), ("method", "norm")},
        set(),
    ),
    "rust/src/main.rs": ({("function", "main")}, {"geometry", "util", "crate::util::clamp"}),
    "java/src/com/acme/App.java": ({("class", "App"), ("method", "main")}, {"com.acme.util.Strings"}),
    "c/vec.h": ({("struct", "vec"), ("type", "vec_t"), ("function", "vec_len")}, set()),
    "c/main.c": ({("function", "main")}, {"stdio.h", "vec.h"}),
    "cpp/shape.hpp": ({("namespace", "geo"), ("class", "Shape"), ("method", "area")}, set()),
    "cpp/circle.cpp": ({("class", "Circle"), ("function", "area")}, {"shape.hpp"}),
    "cs/Services/Billing.cs": (
        {("namespace", "Shop.Services"), ("interface", "IBilling"), ("class", "Billing"), ("method", "Charge")},
        {"Shop.Models", "System"},
    ),
    "rb/lib/shop/cart.rb": ({("module", "Shop"), ("class", "Cart"), ("method", "total"), ("method", "empty")}, set()),
    "rb/lib/shop.rb": ({("module", "Shop")}, {"json", "shop/cart"}),
    "lua/lib/util.lua": ({("function", "trim"), ("function", "helper")}, set()),
    "lua/main.lua": (set(), {"lib.util"}),
}


def _entry(rel: str):
    text = POLYGLOT[rel]
    spec = language_for(rel.rsplit("/", 1)[-1])
    return extract(rel, spec.name, text, len(text), 0, 40)


@pytest.mark.parametrize("language", PARSED_LANGUAGES)
def test_every_language_has_a_query_that_compiles_offline(language):
    assert query(language).pattern_count > 0


def test_the_fixture_covers_every_parsed_language():
    covered = {language_for(rel.rsplit("/", 1)[-1]).name for rel in EXPECTED}
    assert covered == set(PARSED_LANGUAGES)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_definitions_and_imports_are_found(rel):
    entry = _entry(rel)
    want_defs, want_imports = EXPECTED[rel]
    found_defs = {(d.kind, d.name) for d in entry.definitions}
    assert want_defs <= found_defs, f"missing {want_defs - found_defs}"
    found_imports = {i.spec for i in entry.imports}
    assert want_imports <= found_imports, f"missing {want_imports - found_imports}"


def test_relative_imports_are_marked():
    specs = {(i.spec, i.relative) for i in _entry("rb/lib/shop.rb").imports}
    assert ("shop/cart", True) in specs and ("json", False) in specs
    assert ("vec.h", True) in {(i.spec, i.relative) for i in _entry("c/main.c").imports}
    assert ("geometry", True) in {(i.spec, i.relative) for i in _entry("rust/src/main.rs").imports}


def test_signatures_stop_before_the_body():
    sigs = {d.name: d.signature for d in _entry("py/app/models.py").definitions}
    assert sigs["make_user"] == "def make_user(name: str) -> User:"
    sigs = {d.name: d.signature for d in _entry("web/src/geo.ts").definitions}
    assert sigs["distance"] == "export function distance(a: Point, b: Point): number"


def test_python_summary_elides_bodies_and_keeps_imports():
    summary = _entry("py/app/service.py").summary
    assert "from app.models import User, make_user" in summary
    assert "def register(name: str) -> User: ..." in summary
    assert "make_user(util.slugify(name))" not in summary
    models = _entry("py/app/models.py").summary
    assert (
        "class User:\n    def __init__(self, name: str) -> None: ...\n    def display_name(self) -> str: ..." in models
    )


def test_brace_summary_opens_and_closes_containers_and_keeps_small_shapes():
    summary = _entry("web/src/geo.ts").summary
    assert "export class Circle {" in summary and "  area(): number { ... }" in summary
    assert "Math.PI" not in summary
    types = _entry("web/src/types.ts").summary
    assert "export interface Point {\n  x: number;\n  y: number;\n}" in types  # a small shape stays verbatim
    rust = _entry("rust/src/geometry.rs").summary
    assert "impl Point {\n    pub fn norm(&self) -> f64 { ... }\n}" in rust


def test_ruby_and_lua_summaries_end_blocks():
    ruby = _entry("rb/lib/shop/cart.rb").summary
    assert "  class Cart\n    def initialize ... end" in ruby and ruby.rstrip().endswith("end")
    lua = _entry("lua/lib/util.lua").summary
    assert "function M.trim(s) ... end" in lua and "gsub" not in lua


def test_nested_functions_are_local_detail():
    text = "def outer():\n    def inner():\n        pass\n    return inner\n"
    entry = extract("x.py", "python", text, len(text), 0, 40)
    assert [(d.kind, d.name) for d in entry.definitions] == [("function", "outer")]


def test_text_only_languages_are_indexed_without_definitions():
    entry = extract("README.md", "markdown", "# Title\n\nSome words here.\n", 26, 0, 40)
    assert entry.definitions == () and entry.summary == "" and entry.chunks == ("Title Some words here",)


def test_syntax_errors_do_not_stop_extraction():
    text = "def good(x):\n    return x\n\ndef broken(:\n    pass\n\nclass After:\n    pass\n"
    entry = extract("bad.py", "python", text, len(text), 0, 40)
    assert {"good", "After"} <= {d.name for d in entry.definitions}


@pytest.mark.parametrize("rel", ["py/app/models.py", "web/src/geo.ts", "rust/src/geometry.rs", "rb/lib/shop/cart.rb"])
def test_incremental_reparse_equals_a_fresh_parse(rel):
    import random

    from deepfim.context.trees import TreeCache

    rng = random.Random(rel)
    text = POLYGLOT[rel]
    language = language_for(rel.rsplit("/", 1)[-1]).name
    trees = TreeCache()
    extract(rel, language, text, len(text), 0, 40, trees=trees)
    for _ in range(30):  # insertions, deletions and replacements anywhere, including at the ends
        a, b = sorted(rng.randrange(len(text) + 1) for _ in range(2))
        text = text[:a] + rng.choice(["", "x", "\n", "def f(y):\n    return y\n", "}", "class Z:\n  pass\n"]) + text[b:]
        incremental = extract(rel, language, text, len(text), 0, 40, trees=trees)
        assert incremental == extract(rel, language, text, len(text), 0, 40)


def test_the_changed_range_is_found_as_a_byte_loop_finds_it():
    """trees.py's common prefix and suffix (chunks, then halving) against the plain definition."""
    import random

    from deepfim.context.trees import _common_prefix, _common_suffix

    def prefix(a, b):
        i = 0
        while i < min(len(a), len(b)) and a[i] == b[i]:
            i += 1
        return i

    def suffix(a, b, limit):
        n = 0
        while n < limit and a[len(a) - n - 1] == b[len(b) - n - 1]:
            n += 1
        return n

    rng = random.Random(3)
    for _ in range(600):
        a = bytes(rng.randrange(3) for _ in range(rng.choice([0, 1, 5, 100, 4095, 4096, 4097, 9000])))
        b = bytearray(a)
        cut = sorted(rng.randrange(len(a) + 1) for _ in range(2))
        b[cut[0] : cut[1]] = rng.choice([b"", b"x", b"xy\n"])
        b = bytes(b)
        start = _common_prefix(a, b)
        assert start == prefix(a, b)
        limit = min(len(a), len(b)) - start
        assert _common_suffix(a, b, limit) == suffix(a, b, limit)


def test_the_enclosing_class_after_keystrokes_equals_a_fresh_parse():
    """members.py parses a cursor file incrementally from its previous text; a root it handed
    out before stays as it was."""
    from deepfim.context import members
    from deepfim.context.trees import TreeCache

    path, text = "app/models.py", POLYGLOT["py/app/models.py"]
    at = text.index("self.name = name\n") + len("self.name = name\n")
    line = text[:at].count("\n")
    first_root = members._parse(text, path)[0]
    first_tree = str(first_root)
    for ch in "        value = self.":
        text = text[:at] + ch + text[at:]
        at += 1
        got = members.enclosing_class(text, path, line)  # parsed from the tree of the text before
        incremental, members._last_trees = members._last_trees, TreeCache()
        members._parse.cache_clear()
        fresh = members.enclosing_class(text, path, line)  # parsed from nothing
        members._last_trees = incremental
        assert got == fresh and got.name == "class User"
    assert str(first_root) == first_tree  # the reparses edited copies, not this tree
