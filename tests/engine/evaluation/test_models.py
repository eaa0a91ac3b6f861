"""Completion models of the evaluation (engine/evaluation/models.py): the copy baseline (through a
real packed prompt) and loading a model that is not there."""

from __future__ import annotations

import importlib.util

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.evaluation.models import CopyBaseline, FimModel, ModelUnavailableError, load_model, longest_copy
from deepfim.engine.evaluation.tasks import FimTask, finalize
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.training.layout import pack_fim_prompt


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
