"""Single- vs multi-line decisions and the streaming stop rule."""

import pytest

from deepfim.context.languages import for_editor
from deepfim.lsp_server.shaping.extent import Extent, decide_extent, line_limit

PY = for_editor("python")
JS = for_editor("javascript")


@pytest.mark.parametrize(
    ("line_prefix", "line_suffix", "nodes", "spec", "expected"),
    [
        ("    comp", "ute()", [], PY, Extent.NONE),  # inside a word
        ("    x = foo(", "a)", [], PY, Extent.SINGLE_LINE),  # code after the cursor
        ("    x = ", "", [], PY, Extent.SINGLE_LINE),
        ("    ", "", [], PY, Extent.MULTI_LINE),  # fresh line
        ("def f(x):", "", [], PY, Extent.MULTI_LINE),  # opens a block
        ("    items = [", "]", [], PY, Extent.MULTI_LINE),  # only closers after the cursor
        ("function f() {", "", [], JS, Extent.MULTI_LINE),
        ("# note:", "", ["comment", "module"], PY, Extent.SINGLE_LINE),  # in a comment
        ("    ", "", ["string_content", "string"], PY, Extent.SINGLE_LINE),  # in a docstring
    ],
)
def test_decide_extent(line_prefix, line_suffix, nodes, spec, expected):
    assert decide_extent(line_prefix, line_suffix, nodes, spec) is expected


def test_single_line_stops_at_newline_and_waits_before():
    limit = line_limit(Extent.SINGLE_LINE, "x = ", "\n", 1, PY)
    assert limit.cut("foo(1") is None
    assert limit.cut("foo(1)\nbar") == 6
    assert limit.cut("foo(1)", final=True) == 6


def test_block_ends_at_dedent_while_streaming():
    limit = line_limit(Extent.MULTI_LINE, "def f(x):", "\n\ndef g(): pass", 10, PY)
    text = "\n    y = x\n    return y\n\nd"
    assert limit.cut(text[:-1]) is None  # the last line has no code yet
    assert limit.cut(text) == len("\n    y = x\n    return y\n")


def test_fresh_line_block_uses_first_line_indent_and_max_lines():
    limit = line_limit(Extent.MULTI_LINE, "    ", "\n", 3, PY)
    assert limit.cut("a = 1\n    b = 2\nc = 3") == len("a = 1\n    b = 2")
    assert limit.cut("a = 1\n    b = 2\n    c = 3\n    d = 4") == len("a = 1\n    b = 2\n    c = 3")


def test_closing_brace_is_kept_only_when_the_suffix_lacks_it():
    open_only = line_limit(Extent.MULTI_LINE, "function f() {", "\n\nfunction g() {}", 10, JS)
    text = "\n  return 1;\n}\n\nfunction h() {}"
    assert text[: open_only.cut(text)] == "\n  return 1;\n}"
    closed = line_limit(Extent.MULTI_LINE, "function f() {", "\n}\n", 10, JS)
    assert text[: closed.cut(text)] == "\n  return 1;"


def test_special_token_text_ends_the_completion():
    single = line_limit(Extent.SINGLE_LINE, "x = ", "\n", 1, PY)
    assert single.cut("foo(1)<｜end▁of▁sentence｜>bar") == 6
    multi = line_limit(Extent.MULTI_LINE, "    ", "\n", 5, PY)
    assert multi.cut("a = 1\n    b = 2<｜fim▁hole｜>") == len("a = 1\n    b = 2")
    assert single.cut("foo(\ufffd1)<｜end▁of▁sentence｜>") == 4
