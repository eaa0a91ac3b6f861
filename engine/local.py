"""The in-process engine as a `CompletionBackend`: instant and expert modes, each on a checkpoint.

Modes are presets of the engine: which checkpoint serves them (the same one may serve both:
then model, prefix cache and engine thread are shared). Sampling and budgets per mode are set
by the caller (the language server's mode presets) in each request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from deepfim import env
from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.allocator import keep_freed_memory
from deepfim.engine.api import CompletionHandle, CompletionRequest, StreamCallback
from deepfim.engine.llm_engine import LLMEngine
from deepfim.engine.loader import load_model
from deepfim.engine.model_runner import ModelRunner
from deepfim.engine.prefix_cache import PrefixCache
from deepfim.engine.speculative import SpeculativeConfig
from deepfim.engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)

MODES = ("instant", "expert")


@dataclass(frozen=True)
class EngineConfig:
    cache_budget_bytes: int = 1 << 30
    persist_cache: bool = False  # save prefix caches on close and reload them on start
    speculative: SpeculativeConfig = SpeculativeConfig()
    threads: int | None = None


class _Served:
    """One loaded checkpoint with its engine thread."""

    def __init__(self, checkpoint: Path, config: EngineConfig) -> None:
        self.checkpoint = checkpoint
        self.cache_dir = env.cache_dir() / "prefix" / _dir_key(checkpoint) if config.persist_cache else None
        self.engine = LLMEngine(lambda: self._build(config), name=checkpoint.name)
        try:
            self.runner: ModelRunner = self.engine.wait_ready()
        except BaseException:
            self.engine.close()
            raise
        self.model, self.tokenizer, self.cache = self.runner.model, self.runner.tokenizer, self.runner.cache

    def _build(self, config: EngineConfig) -> ModelRunner:
        """Runs in the engine thread (see LLMEngine)."""
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        model = load_model(self.checkpoint)
        tokenizer = Tokenizer.from_file(self.checkpoint / "tokenizer.json")
        if tokenizer.vocab_size > model.args.vocab_size:
            raise ValueError(
                f"{self.checkpoint}: tokenizer has {tokenizer.vocab_size} ids, model only {model.args.vocab_size}"
            )
        cache = PrefixCache(budget_bytes=config.cache_budget_bytes)
        if self.cache_dir is not None:
            log.info("%s: %d prefix-cache entries restored", self.checkpoint, cache.load(self.cache_dir))
        return ModelRunner(model, tokenizer, cache, config.speculative, self.checkpoint.name)

    def close(self) -> None:
        self.engine.close()
        if self.cache_dir is not None:
            self.cache.save(self.cache_dir)


def _dir_key(checkpoint: Path) -> str:
    import hashlib

    return hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:16]


class LocalBackend:
    """`CompletionBackend` running the V4 engine in this process."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        expert_checkpoint: str | Path | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        config = config or EngineConfig()
        keep_freed_memory()
        instant = Path(checkpoint) if checkpoint is not None else DEFAULT_MODEL_DIR
        expert = Path(expert_checkpoint) if expert_checkpoint is not None else instant
        self._served: dict[Path, _Served] = {}
        self._modes: dict[str, _Served] = {}
        try:
            for mode, path in (("instant", instant), ("expert", expert)):
                key = path.resolve()
                if key not in self._served:
                    self._served[key] = _Served(path, config)
                self._modes[mode] = self._served[key]
        except Exception:
            self.close()
            raise
        a, b = self._modes["instant"].tokenizer, self._modes["expert"].tokenizer
        if a is not b and (a.vocab_size != b.vocab_size or a.special != b.special):
            self.close()
            raise ValueError(f"instant and expert checkpoints use different tokenizers ({instant}, {expert})")
        self.tokenizer_path = str(instant / "tokenizer.json")

    def fim_orders(self, mode: str) -> tuple[str, ...]:
        return self._serving(mode).model.args.fim_orders

    def submit(self, request: CompletionRequest, on_text: StreamCallback | None = None) -> CompletionHandle:
        return self._serving(request.mode).engine.submit(request, on_text)

    def _serving(self, mode: str) -> _Served:
        if mode not in self._modes:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        return self._modes[mode]

    def stats(self) -> dict:
        out: dict = {"modes": {}, "checkpoints": {}}
        for mode, served in self._modes.items():
            out["modes"][mode] = str(served.checkpoint)
        for served in self._served.values():
            args = served.model.args
            out["checkpoints"][str(served.checkpoint)] = {
                "params": sum(p.numel() for p in served.model.parameters()),
                "layers": args.n_layers,
                "fim_orders": list(args.fim_orders),
                "cache": served.cache.stats(),
                "engine": served.engine.stats(),
                "speculative": served.runner.draft_stats.as_dict(),
            }
        return out

    def close(self) -> None:
        for served in self._served.values():
            served.close()
        self._served.clear()
