"""Continuous batching on the embedded model: requests decoded together in one engine give the
same tokens as each run alone (greedy, speculative verification, sampled with a seed, several
candidates), and a step decodes every running sequence at once."""

from __future__ import annotations

import threading

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.loader import load_model
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.engine_loop import EngineLoop
from deepfim.engine.serving.generate import generate
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.prefix_cache import PrefixCache

SNIPPETS = [
    "def add(a, b):\n    return ",
    "for item in items:\n    total += item.",
    "class Cart:\n    def __init__(self):\n        self.items = []\n\n    def add(self, item):\n        ",
    "import os\n\ndef read(path):\n    with open(path) as f:\n        return f.",
    "# sum of squares\nsquares = [x * x for x in ",
    "if __name__ == '__main__':\n    ",
]
PARAMS = [
    SamplingParams(max_tokens=40),  # greedy with n-gram drafts (verification calls of several tokens)
    SamplingParams(max_tokens=24, speculative=False),
    SamplingParams(max_tokens=16, temperature=0.8, seed=11, n=2),  # two candidates, each its own state
    SamplingParams(max_tokens=30, stop=("\n",)),
    SamplingParams(max_tokens=12, token_healing=False),
    SamplingParams(max_tokens=33),
]


class GatedRunner(ModelRunner):
    """The engine's runner, holding its first step until the test has queued every request, and
    remembering how many sequences each step carried."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.widths: list[int] = []

    def step(self, batch):
        self.gate.wait(30)
        self.widths.append(sum(max(1, len([c for c in r.candidates if not c.finished])) for r in batch))
        return super().step(batch)


@pytest.fixture(scope="module")
def embedded():
    return load_model(DEFAULT_MODEL_DIR), Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")


def test_batched_requests_get_the_tokens_they_get_alone(embedded):
    model, tok = embedded
    prompts = [[tok.special.bos, *tok.encode(text)] for text in SNIPPETS]
    runner = GatedRunner(model, tok, PrefixCache())
    engine = EngineLoop(lambda: runner)
    try:
        engine.wait_ready(30)
        handles = [engine.submit(CompletionRequest(p, s)) for p, s in zip(prompts, PARAMS, strict=True)]
        runner.gate.set()
        together = [h.result(120).candidates for h in handles]
    finally:
        engine.close()
    assert max(runner.widths) >= len(SNIPPETS)  # they really decoded in the same steps
    alone_runner = ModelRunner(model, tok, None)
    for prompt, params, batched in zip(prompts, PARAMS, together, strict=True):
        alone = generate(alone_runner, prompt, params)
        assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
        assert [(c.text, c.finish_reason) for c in batched] == [(c.text, c.finish_reason) for c in alone]
    assert any(len(c.token_ids) > 8 for cands in together for c in cands)  # long enough to mean something
