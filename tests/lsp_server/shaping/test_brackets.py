"""Bracket/quote lexing and balancing against prefix and suffix."""

import pytest

from deepfim.context.languages import for_editor
from deepfim.lsp_server.shaping.brackets import BracketScanner, balance

PY = BracketScanner(for_editor("python"))
JS = BracketScanner(for_editor("javascript"))


def test_scan_skips_strings_comments_and_escapes():
    state = PY.scan("x = foo(\"(\", '[\\'', # not a comment\n  [1, 2  # ( in a comment\n")
    assert state.stack == ["(", "["]
    assert JS.scan("f(/* ( */ `a\n(b` , {").stack == ["(", "{"]


def test_scan_tracks_open_strings_and_triple_quotes():
    assert PY.scan('s = f("abc').stack == ["(", '"']
    assert PY.scan('doc = """first\n(still string').stack == ['"""']
    # a single-quoted string ends at the newline (error recovery)
    assert PY.scan('s = "abc\nx = (').stack == ["("]


def test_closes_counts_prefix_brackets_closed_by_text():
    state = PY.scan("x = foo(bar(")
    assert PY.closes("))", state) == 2
    assert PY.closes(") + 1", state) == 1
    assert PY.closes(" + 1", state) == 0


@pytest.mark.parametrize(
    ("prefix", "suffix_line", "completion", "close_open", "expected"),
    [
        ("x = foo(a, ", ")", "b) + 1", True, "b"),  # the suffix closes foo( already
        ("x = foo(a, ", "", "b) + 1", True, "b) + 1"),  # nothing closes it: keep
        ("x = ", "", "foo(bar(1", True, "foo(bar(1))"),  # close what the completion opened
        ("x = ", "", "foo(bar(1", False, "foo(bar(1"),
        ('print("hel', '")', 'lo")', True, "lo"),  # the string is closed by the suffix
        ("x = ", "", "'abc", True, "'abc'"),
        ("x = [", "]", "1, (2", True, "1, (2)"),
        ("x = 1  ", "", "# note (", True, "# note ("),  # nothing to close inside a comment
    ],
)
def test_balance(prefix, suffix_line, completion, close_open, expected):
    assert balance(completion, PY.scan(prefix), suffix_line, PY, close_open) == expected
