"""The shipped embedded model: it loads by default and completes what a trained model completes.

Each probe is a FIM prompt (the model's best order, SPM) whose greedy completion a trained
model gets right and a model of the same shape with random weights does not: closing a call
it opened, finishing common idioms, repeating a name from the line before.
"""

from __future__ import annotations

import pytest
import torch

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.api import SamplingParams
from deepfim.engine.model.config import ModelArgs
from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt
from deepfim.engine.model.transformer import Transformer, init_weights
from deepfim.engine.serving.generate import generate, load_runner
from deepfim.engine.serving.model_runner import ModelRunner

# (prefix, suffix, what the completion must start with)
PROBES = [
    ("def total_price(items):\n    return sum(item.price for item in items)\n\n\ndef report(items):\n"
     "    total = total_price(items", "\n    print(total)\n", ")"),
    ("import numpy as", "\n", " np"),
    ("def load(path):\n    with open(path) as", "\n        return f.read()\n", " f:"),
    ("def parse(text):\n    try:\n        return int(text)\n    except ValueError as", "\n        raise\n", " e"),
    ("def first(items):\n    if items is not", "\n        return items[0]\n", " None:"),
    ("class User:\n    def __init__(self, name):\n        self.name =", "\n", " name"),
]  # fmt: skip


def complete(runner: ModelRunner, prefix: str, suffix: str) -> str:
    prompt = build_fim_prompt(runner.tokenizer, prefix, suffix, FimOrder.SPM, path="example.py")
    return generate(runner, prompt.ids, SamplingParams(max_tokens=12, stop=("\n",)))[0].text


@pytest.fixture(scope="module")
def shipped() -> ModelRunner:
    return load_runner()  # no checkpoint given: the embedded default model


@pytest.fixture(scope="module")
def untrained(shipped) -> ModelRunner:
    return ModelRunner(init_weights(Transformer(shipped.model.args), seed=1).eval(), shipped.tokenizer)


def test_default_model_is_the_shipped_v4_architecture(shipped):
    args = ModelArgs.from_file(DEFAULT_MODEL_DIR)
    assert shipped.model.args == args
    assert set(args.compress_ratios) == {0, 4, 128} and args.window_size == 128
    assert args.hc_mult == 4 and args.n_hash_layers >= 1 and args.n_mtp_layers == 1
    assert args.n_shared_experts == 1 and args.n_routed_experts > args.n_activated_experts
    assert set(args.fim_orders) == {"psm", "spm"}
    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.glob("*.safetensors"))
    assert size < 60e6


@pytest.mark.parametrize("prefix, suffix, expected", PROBES, ids=[p[2].strip() or "close" for p in PROBES])
def test_trained_model_completes_what_a_random_one_cannot(shipped, untrained, prefix, suffix, expected):
    got = complete(shipped, prefix, suffix)
    assert got.startswith(expected), f"{prefix[-30:]!r} -> {got!r}"
    assert not complete(untrained, prefix, suffix).startswith(expected)


def test_speculation_keeps_greedy_output(shipped):
    """Speculative decoding on the shipped model (n-gram drafts verified in one C call; MTP
    drafts are off on the CPU decode step): the same tokens as plain greedy decoding."""
    from deepfim.engine.serving.speculative import SpeculativeConfig

    prompt = build_fim_prompt(shipped.tokenizer, PROBES[0][0] * 3, "\n", FimOrder.SPM, path="a.py").ids
    plain = ModelRunner(shipped.model, shipped.tokenizer, None, SpeculativeConfig(enabled=False))
    spec = ModelRunner(shipped.model, shipped.tokenizer, None, SpeculativeConfig(enabled=True))
    params = SamplingParams(max_tokens=40)
    with torch.inference_mode():
        a = generate(plain, prompt, params)[0].token_ids
        b = generate(spec, prompt, params)[0].token_ids
    assert a == b
    assert spec.draft_stats.rounds > 0


def test_token_healing_finishes_the_word_under_the_cursor(shipped):
    """A cursor inside an identifier: the prompt ends on a token ("normalize_") that the model
    rarely saw followed by the rest of the name. Healing re-generates that token under the
    constraint that it reproduces the typed text, so the model can pick "_path" whole."""
    prefix, suffix = "def normalize_path(p):\n    return p.strip()\n\n\nclean = normalize_", "\n"
    ids = build_fim_prompt(shipped.tokenizer, prefix, suffix, FimOrder.SPM, path="m.py").ids
    healed_away = shipped.tokenizer.decode(ids[-1:])
    assert prefix.endswith(healed_away) and healed_away.strip()
    params = SamplingParams(max_tokens=12, stop=("\n",))
    healed = generate(shipped, ids, params)[0]
    raw = generate(shipped, ids, SamplingParams(max_tokens=12, stop=("\n",), token_healing=False))[0]
    assert healed.text.startswith("path")  # only the text after the cursor, never the typed part
    assert shipped.tokenizer.decode(healed.token_ids).startswith(healed_away + "path")
    assert not raw.text.startswith("path")


def test_a_completion_stuck_in_a_loop_stops_after_the_first_copy(shipped):
    prefix, suffix = "__all__ = [\n", "\n]\n"
    ids = build_fim_prompt(shipped.tokenizer, prefix, suffix, FimOrder.SPM, path="pkg/__init__.py").ids
    looping = generate(shipped, ids, SamplingParams(max_tokens=60, stop_loops=False))[0]
    line = looping.text.split("\n")[0] + "\n"
    assert looping.text.startswith(line * 3)  # the model repeats one line until the budget ends
    streamed: list[str] = []
    guarded = generate(shipped, ids, SamplingParams(max_tokens=60), lambda i, t, m: streamed.append(t))[0]
    assert guarded.text == line and guarded.finish_reason == "stop"
    assert "".join(streamed) == guarded.text and len(guarded.token_ids) < len(looping.token_ids)
