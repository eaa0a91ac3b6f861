"""Synchronous generation for scripts, the CLI and evaluation (no engine thread).

`generate` runs one request to completion in the calling thread with the same runner the
engine uses (prefill in cache-aligned chunks, sampling, stop rules, streaming, speculation).
`should_stop` is polled between steps, which is how a caller aborts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.api import Candidate, CompletionHandle, CompletionRequest, SamplingParams, StreamCallback
from deepfim.engine.model.device_setup import load_for_device
from deepfim.engine.model.prompt_format import Prompt
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.model.transformer import Transformer
from deepfim.engine.serving.allocator import keep_freed_memory
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.sequence import ActiveRequest
from deepfim.engine.serving.speculative import SpeculativeConfig


def generate(
    runner: ModelRunner,
    prompt: list[int],
    params: SamplingParams,
    on_text: StreamCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Candidate]:
    """Completes `prompt`; returns one Candidate per `params.n`."""
    request = CompletionRequest(prompt, params)
    handle = CompletionHandle(request)
    req = ActiveRequest(request, handle, on_text, runner.tokenizer)
    while not req.done:
        if should_stop is not None and should_stop():
            handle.cancel()
            for cand in req.candidates:
                if not cand.finished:
                    cand.finish_reason = "cancelled"
            if req.prefilling:
                return []
            break
        runner.advance(req)
    return req.results()


class EngineFimModel:
    """The evaluation harness's `FimModel` for a checkpoint: greedy, no prefix cache."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, name: str, speculative: bool = True) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.runner = ModelRunner(model, tokenizer, None, SpeculativeConfig(enabled=speculative))

    def complete(self, prompt: Prompt, max_new_tokens: int) -> str:
        candidates = generate(self.runner, prompt.ids, SamplingParams(max_tokens=max_new_tokens))
        return candidates[0].text if candidates else ""


def load_runner(
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    keep_quantized: bool | None = None,
    hot_experts: int | None = None,
) -> ModelRunner:
    """A runner (no prefix cache) for `checkpoint` on `device` (device_setup.load_options)."""
    keep_freed_memory()
    path = Path(checkpoint) if checkpoint is not None else DEFAULT_MODEL_DIR
    model = load_for_device(path, device, keep_quantized, hot_experts=hot_experts)
    return ModelRunner(model, Tokenizer.from_file(path / "tokenizer.json"), None)


def fim_model(checkpoint: Path | None = None, device: str = "cpu") -> EngineFimModel:
    """Hook used by `deepfim eval` (engine/evaluation/models.py)."""
    path = checkpoint if checkpoint is not None else DEFAULT_MODEL_DIR
    model = load_for_device(path, device)
    return EngineFimModel(model, Tokenizer.from_file(path / "tokenizer.json"), f"model:{path.name}")
