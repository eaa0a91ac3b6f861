"""A first start: the runner does not wait for the C decode step's build. It serves on the
modules while the library compiles and attaches the C step when it is there; the output is
the same greedy text either way."""

from __future__ import annotations

import threading

from serving_support import PROMPT

from deepfim.engine.api import SamplingParams
from deepfim.engine.model.decode_step import DecodeStep
from deepfim.engine.serving import model_runner
from deepfim.engine.serving.generate import generate
from deepfim.engine.serving.model_runner import ModelRunner


def test_a_runner_serves_while_the_c_step_builds_then_uses_it(tiny_model, runner, monkeypatch):
    want = generate(runner, PROMPT, SamplingParams(max_tokens=24))[0].token_ids  # the C step from the start
    built = threading.Event()
    monkeypatch.setattr(model_runner.c_step_cpu, "building", lambda: True)
    monkeypatch.setattr(model_runner.c_step_cpu, "compiling", lambda: not built.is_set())  # the compiler runs
    starting = ModelRunner(tiny_model, runner.tokenizer, None)
    assert starting.decode_step is None and starting.mtp is None  # MTP off as with the C step
    during = generate(starting, PROMPT, SamplingParams(max_tokens=24))[0].token_ids  # the modules serve
    assert starting.decode_step is None
    built.set()
    after = generate(starting, PROMPT, SamplingParams(max_tokens=24))[0].token_ids  # its first call attaches it
    assert isinstance(starting.decode_step, DecodeStep)
    assert during == want and after == want
