"""The whole shaping chain and candidate ranking on realistic cursors."""

import pytest

from deepfim.context.languages import for_editor
from deepfim.lsp_server.shaping.shape import Shaped, analyse, rank, shape

PY = for_editor("python")
JS = for_editor("javascript")


def _shape(doc: str, raw: str, spec=PY, max_lines=8) -> str:
    prefix, suffix = doc.split("|")
    return shape(raw, analyse(prefix, suffix, spec, max_lines)).text


@pytest.mark.parametrize(
    ("doc", "raw", "expected"),
    [
        ("x = foo(a, |)\n", "b) + 1", "b"),
        ('print("hel|")\n', 'lo world")', "lo world"),
        (
            "def f(x):|\n\ndef g():\n    pass\n",
            "\n    return x + 1\n\ndef g():\n    pass",
            "\n    return x + 1",
        ),
        ("def f(x):\n    |\n    return y\n", "y = x * 2\n    return y\n", "y = x * 2"),
        ("def f(x):\n    |\n", "    return x\n", "return x"),
        ("def f(x):\n    y = [|\n", "1, 2, 3]\n    return y", "1, 2, 3]"),
        ("total = compute(|\n", "items, tax)\nprint(total)", "items, tax)"),
        ("def f(x):\n    |\n", "   \n\n", ""),  # whitespace only: suppressed
        ("def f(x):\n    return x\n|", "def g(y):\n    return y", "def g(y):\n    return y"),
    ],
)
def test_shape_python(doc, raw, expected):
    assert _shape(doc, raw) == expected


def test_shape_keeps_crlf_and_multi_line_limit():
    assert _shape("x = 1\r\ndef f(x):|\r\n", "\r\n    return x\r\n") == "\r\n    return x"
    out = _shape("def f():\n    |\n", "a = 1\n    b = 2\n    c = 3\n    d = 4", max_lines=2)
    assert out == "a = 1\n    b = 2"


def test_shape_brace_language():
    assert _shape("function f() {|\n}\n", "\n  return 1;\n}\n") == "\n  return 1;"


def test_shape_cuts_incomplete_syntax_at_length_limit():
    out = _shape("def f(items):\n    |\n", "total = sum(items)\n    return round(total,")
    assert out == "total = sum(items)"


def test_rank_prefers_valid_then_likely_and_drops_duplicates():
    a = Shaped("a(", False, "a(")
    b = Shaped("b", True, "b")
    c = Shaped("c", True, "c")
    ranked = rank(
        [
            (a, -0.1, 1),
            (b, -2.0, 2),
            (c, -0.5, 1),
            (Shaped("c", True, "c"), 0.0, 1),
            (Shaped("", False, ""), 0, 1),
        ]
    )
    assert [r.text for r in ranked] == ["c", "b", "a("]
    assert ranked[0].score == pytest.approx(-0.5) and ranked[1].score == pytest.approx(-1.0)


def test_rank_puts_non_finite_likelihoods_last():
    ranked = rank([(Shaped("a", True, "a"), float("nan"), 1), (Shaped("b", True, "b"), -3.0, 1)])
    assert [r.text for r in ranked] == ["b", "a"]
