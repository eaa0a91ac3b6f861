"""The in-process engine as a `CompletionBackend`: instant and expert modes, each on a checkpoint.

This is the only router from mode to checkpoint (`deepfim.engine.api.Mode`): the same
checkpoint may serve both modes, and then model, prefix cache and engine thread are shared.
Sampling and budgets per mode are set by the caller (the language server's mode presets).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from deepfim import env
from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.api import CompletionHandle, CompletionRequest, Mode, StreamCallback
from deepfim.engine.model.device_setup import load_for_device
from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.allocator import keep_freed_memory
from deepfim.engine.serving.engine_loop import EngineLoop
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.prefix_cache import PrefixCache
from deepfim.engine.serving.snapshot_store import SnapshotStore, model_key
from deepfim.engine.serving.speculative import SpeculativeConfig

log = logging.getLogger(__name__)

# How long a Python thread keeps the GIL while another waits for it (the interpreter's default
# is 5 ms). A model call on the modules is ~1,500 torch ops, each of which lets the GIL go and
# takes it back: beside one busy Python thread (an index scan, a prompt being packed, a request
# being parsed), each op waited up to the whole interval. A 370-token prefill (embedded model,
# 4K context, one core free) took 85 ms alone and 10.9 s beside such a thread at 5 ms; 2.0 s at
# 1 ms, 1.1 s at 0.5 ms, 0.61 s at 0.2 ms, 0.40 s at 0.1 ms. Alone it is the same at any of them.
GIL_SWITCH_S = 0.0002


@dataclass(frozen=True)
class LocalBackendConfig:
    cache_budget_bytes: int = 1 << 30
    snapshots: bool = False  # keep the anchors' states that requests ask to persist on disk (warm restarts)
    speculative: SpeculativeConfig = SpeculativeConfig()
    threads: int | None = None
    profile_overrides: tuple[tuple[str, object], ...] = ()  # over each checkpoint's serving.json (evaluation)
    device: str = "cpu"  # "cpu", "cuda", "cuda:N"
    keep_quantized: bool | None = None  # None: as engine/model/device_setup.py decides for the device
    model_loader: Callable[[Path], object] | None = None  # instead of loading: rank 0 of a parallel engine
    hot_experts: int | None = None  # routed experts in host memory, this many per layer on the device


class _LoadedCheckpoint:
    """One loaded checkpoint with its engine thread."""

    def __init__(self, checkpoint: Path, config: LocalBackendConfig) -> None:
        self.checkpoint = checkpoint
        self.engine = EngineLoop(lambda: self._build(config), name=checkpoint.name)
        try:
            self.runner: ModelRunner = self.engine.wait_ready()
        except BaseException:
            self.engine.close()
            raise
        self.model, self.tokenizer = self.runner.model, self.runner.tokenizer
        self.prefix_cache = self.runner.prefix_cache
        self.profile = self.runner.profile

    def _build(self, config: LocalBackendConfig) -> ModelRunner:
        """Runs in the engine thread (see EngineLoop)."""
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        sys.setswitchinterval(GIL_SWITCH_S)
        if config.model_loader is not None:
            model = config.model_loader(self.checkpoint)
        else:
            model = load_for_device(self.checkpoint, config.device, config.keep_quantized,
                                    hot_experts=config.hot_experts)  # fmt: skip
        tokenizer = Tokenizer.from_file(self.checkpoint / "tokenizer.json")
        if tokenizer.vocab_size > model.args.vocab_size:
            raise ValueError(
                f"{self.checkpoint}: tokenizer has {tokenizer.vocab_size} ids, model only {model.args.vocab_size}"
            )
        profile = ServingProfile.for_checkpoint(self.checkpoint, model.args.fim_orders)
        if config.profile_overrides:
            profile = ServingProfile.from_dict(dict(config.profile_overrides), profile)
        store = None
        if config.snapshots:
            store = SnapshotStore(env.cache_dir(), model_key(self.checkpoint, self.checkpoint / "tokenizer.json"))
        cache = PrefixCache(budget_bytes=config.cache_budget_bytes, store=store)
        return ModelRunner(model, tokenizer, cache, config.speculative, self.checkpoint.name, profile=profile)

    def close(self) -> None:
        self.engine.close()


class LocalBackend:
    """`CompletionBackend` running the V4 engine in this process."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        expert_checkpoint: str | Path | None = None,
        config: LocalBackendConfig | None = None,
    ) -> None:
        config = config or LocalBackendConfig()
        keep_freed_memory()
        instant = Path(checkpoint) if checkpoint is not None else DEFAULT_MODEL_DIR
        expert = Path(expert_checkpoint) if expert_checkpoint is not None else instant
        self._loaded: dict[Path, _LoadedCheckpoint] = {}
        self._modes: dict[Mode, _LoadedCheckpoint] = {}
        try:
            for mode, path in ((Mode.INSTANT, instant), (Mode.EXPERT, expert)):
                key = path.resolve()
                if key not in self._loaded:
                    self._loaded[key] = _LoadedCheckpoint(path, config)
                self._modes[mode] = self._loaded[key]
        except Exception:
            self.close()
            raise
        a, b = self._modes[Mode.INSTANT].tokenizer, self._modes[Mode.EXPERT].tokenizer
        if a is not b and (a.vocab_size != b.vocab_size or a.special != b.special):
            self.close()
            raise ValueError(f"instant and expert checkpoints use different tokenizers ({instant}, {expert})")
        self.tokenizer_path = str(instant / "tokenizer.json")

    def fim_orders(self, mode: str) -> tuple[str, ...]:
        return self._serving(mode).model.args.fim_orders

    def serving_profile(self, mode: str) -> dict:
        return self._serving(mode).profile.as_dict()

    def submit(self, request: CompletionRequest, on_text: StreamCallback | None = None) -> CompletionHandle:
        return self._serving(request.mode).engine.submit(request, on_text)

    def _serving(self, mode: str) -> _LoadedCheckpoint:
        try:
            return self._modes[Mode(mode)]
        except ValueError:
            raise ValueError(f"unknown mode {mode!r}; expected one of {[m.value for m in Mode]}") from None

    def healthy(self) -> bool:
        """Every checkpoint's engine thread is running (a model that failed to load never gets here)."""
        return bool(self._loaded) and all(loaded.engine.alive for loaded in self._loaded.values())

    def stats(self) -> dict:
        out: dict = {"modes": {}, "checkpoints": {}}
        for mode, loaded in self._modes.items():
            out["modes"][mode.value] = str(loaded.checkpoint)
        for loaded in self._loaded.values():
            args = loaded.model.args
            out["checkpoints"][str(loaded.checkpoint)] = {
                "params": sum(p.numel() for p in loaded.model.parameters()),
                "layers": args.n_layers,
                "fim_orders": list(args.fim_orders),
                "profile": loaded.profile.as_dict(),
                "cache": loaded.prefix_cache.stats(),
                "engine": loaded.engine.stats(),
                "speculative": loaded.runner.draft_stats.as_dict(),
            }
        return out

    def close(self) -> None:
        for loaded in self._loaded.values():
            loaded.close()
        self._loaded.clear()
