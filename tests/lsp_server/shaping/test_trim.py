"""Suffix overlap, prefix repeats and indentation."""

from deepfim.lsp_server.shaping.trim import (
    expected_indent,
    fix_indentation,
    trim_prefix_repeat,
    trim_suffix_overlap,
)


def test_trailing_overlap_with_rest_of_line():
    assert trim_suffix_overlap('"hi")', "print(", ")", "") == '"hi"'
    assert trim_suffix_overlap("x > 0):", "if (", "):", "") == "x > 0"
    assert trim_suffix_overlap("a + total", "x = ", "total", "") == "a + "
    # identifier overlap that is not the whole rest of the line stays
    assert trim_suffix_overlap("a + to", "x = ", "total", "") == "a + to"


def test_lines_repeating_the_next_line_are_dropped():
    completion = "y = x * 2\n    return y\n    z = 3"
    assert trim_suffix_overlap(completion, "    ", "", "    return y") == "y = x * 2"
    assert trim_suffix_overlap("return y", "    ", "", "    return y") == ""  # repeats it whole
    assert trim_suffix_overlap("\n  a,\n  b,\n)", "f(", ")", "") == "\n  a,\n  b,"


def test_prefix_repeat():
    assert trim_prefix_repeat("return total", "    return ") == "total"
    assert trim_prefix_repeat("x + 1", "y = ") == "x + 1"  # too short to judge


def test_expected_indent():
    assert expected_indent("def f():\n    x = 1\n    ", (":",)) == 4
    assert expected_indent("def f():\n  if x:\n    ", (":",)) == 4
    assert expected_indent("class A:\n    def f(self):\n        ", (":",)) == 8


def test_fix_indentation():
    # the model indented on top of the typed indentation
    assert fix_indentation("    return x", "    ", 4, multi_line=False) == "return x"
    assert fix_indentation("return x", "    ", 4, multi_line=False) == "return x"
    assert fix_indentation("  return x", "  ", 4, multi_line=False) == "  return x"
    assert fix_indentation("a = 1   \n    b = 2\n\n", "    ", 4, multi_line=True) == "a = 1\n    b = 2"
