"""Parse windows and cutting a completion back to complete syntax (real grammars)."""

from deepfim.context.languages import for_editor
from deepfim.lsp_server.shaping.syntax import check_and_truncate, errors_in, parse_window, window

PY = for_editor("python")


def test_window_spans_the_enclosing_top_level_block():
    prefix = "import os\n\nclass A:\n    def f(self):\n        x = "
    suffix = "1\n        return x\n\ndef g():\n    pass\n"
    win = window(prefix, suffix)
    assert win.before.startswith("class A:")
    assert win.after == "1\n        return x\n"


def test_window_is_bounded_in_huge_inputs():
    body = "    x = 1\n" * 100_000
    win = window("def f():\n" + body, body)
    assert win.before.count("\n") <= 151 and win.after.count("\n") <= 61


def test_node_types_at_cursor():
    assert "comment" in parse_window(window("x = 1  # hel", "lo\n"), PY).node_types_at_cursor()
    in_docstring = parse_window(window('s = """doc\n', 'more"""\n'), PY).node_types_at_cursor()
    assert any("string" in t for t in in_docstring)


def test_complete_completion_is_kept():
    win = window("def f(x):\n    return ", "\n")
    check = check_and_truncate(parse_window(win, PY), "x + 1")
    assert check.text == "x + 1" and check.valid


def test_cut_to_last_complete_line():
    win = window("def f(x):\n", "\n\ndef g():\n    pass\n")
    check = check_and_truncate(parse_window(win, PY), "    y = x * 2\n    return compute(y,")
    assert check.text == "    y = x * 2" and check.valid


def test_cut_single_line_at_a_token_end():
    win = window("def f(x):\n    return x +", "\n")
    check = check_and_truncate(parse_window(win, PY), " 1 if x else")
    assert check.valid and check.text == " 1"
    assert errors_in("def f(x):\n    return x + 1\n", for_editor("python")) == 0


def test_completion_is_judged_against_already_broken_code():
    # the suffix is broken on its own; a completion that adds nothing worse is valid
    win = window("def f(x):\n    y = ", "\n    return (\n")
    check = check_and_truncate(parse_window(win, PY), "x")
    assert check.valid and check.text == "x"


def test_incremental_parse_agrees_with_a_full_parse():
    win = window(
        'class A:\n    def f(self):\n        s = "😀漢"\n        return ', "\n\n    def g(self):\n        pass\n"
    )
    parsed = parse_window(win, PY)
    for insert in ["s", "s +", "(s,\n         'é')", "s)\n        x = [", "😀", "\n    def h(self):\n        return 1"]:
        assert parsed.errors_with(insert) == errors_in(win.before + insert + win.after, for_editor("python")), insert
