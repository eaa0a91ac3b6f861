"""Metrics, post-processing and the copy baseline (through a real packed prompt)."""

from __future__ import annotations

import importlib.util
import random

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.evaluation.metrics import edit_similarity, exact_match, levenshtein
from deepfim.engine.evaluation.models import CopyBaseline, FimModel, ModelUnavailableError, load_model, longest_copy
from deepfim.engine.evaluation.tasks import FimTask, finalize
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.training.layout import pack_fim_prompt


def _dp(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_levenshtein_matches_dynamic_programming():
    rng = random.Random(0)
    for _ in range(400):
        a = "".join(rng.choice("ab c\n") for _ in range(rng.randint(0, 80)))
        b = "".join(rng.choice("ab c\n") for _ in range(rng.randint(0, 150)))
        assert levenshtein(a, b) == _dp(a, b), (a, b)
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3


def test_levenshtein_handles_long_strings_and_unicode():
    a = "def föö(x):\n    return x  # 😀\n" * 200
    assert levenshtein(a, a) == 0
    assert levenshtein(a, a.replace("😀", "🙂")) == 200


def test_exact_match_and_edit_similarity_ignore_trailing_whitespace():
    assert exact_match("return x  \n", "return x")
    assert exact_match("a  \nb\n\n", "a\nb")
    assert not exact_match("return  x", "return x")
    assert edit_similarity("abcd", "abcd ") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("", "abc") == 0.0
    assert edit_similarity("abcd", "abxd") == pytest.approx(0.75)


def _task(kind: str, prefix: str = "x = 1\n") -> FimTask:
    return FimTask("t", "heldout", "python", kind, prefix, "", "")


def test_finalize_single_line_keeps_the_first_line_and_multi_line_stops_at_dedent():
    assert finalize(_task("single"), "foo(a)\nbar()") == "foo(a)"
    text = "    a = 1\n\n    if a:\n        b = 2\nc = 3\n"
    assert finalize(_task("multi"), text) == "    a = 1\n\n    if a:\n        b = 2"
    assert finalize(_task("multi"), "\n\n") == ""


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")


def test_longest_copy_prefers_the_longest_match():
    prefix = "total = compute(a, b)\nresult = compute(a, b, c)\nlast = compute(a, "
    assert longest_copy(prefix, "", [], max_chars=20).startswith("b, c)")
    assert longest_copy("nothing repeats", "", [], max_chars=20) == ""
    assert longest_copy("alpha = beta", "\nzz alpha = beta.gamma()\n", [], max_chars=9) == ".gamma()\n"


@pytest.mark.parametrize("order", list(FimOrder))
def test_copy_baseline_copies_from_another_file_of_the_package(tok, order):
    helper = "def connect(host, port):\n    return Connection(host=host, port=port, timeout=30)\n"
    prefix = "from helper import connect\n\n\ndef open_default():\n    return Connection(host=host, "
    suffix = "\n"
    context = [("pkg/helper.py", tok.encode(helper))]
    prompt = pack_fim_prompt(
        tok, tok.encode(prefix), tok.encode(suffix), order=order, max_tokens=512, path="pkg/main.py",
        repo="pkg", context=context,
    )  # fmt: skip
    model = CopyBaseline(tok)
    assert isinstance(model, FimModel)
    task = FimTask("t", "heldout", "python", "single", prefix, "port=port, timeout=30)", suffix)
    assert finalize(task, model.complete(prompt, 16)) == "port=port, timeout=30)"
    without = pack_fim_prompt(tok, tok.encode(prefix), tok.encode(suffix), order=order, max_tokens=512)
    assert finalize(task, model.complete(without, 16)) != "port=port, timeout=30)"


def test_load_model_names_what_is_missing(tmp_path):
    with pytest.raises(ModelUnavailableError, match="not a directory"):
        load_model(tmp_path / "absent")
    if importlib.util.find_spec("deepfim.engine.serving.generate") is None:
        with pytest.raises(ModelUnavailableError, match="fim_model"):
            load_model(None)
