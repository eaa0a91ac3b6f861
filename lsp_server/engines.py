"""Which engine serves each mode, built from the settings by one factory.

`make_backend` is the single place that constructs a `CompletionBackend`: the in-process
engine for a checkpoint directory (the embedded model by default) or the LAN client when a
server is configured. `EngineSet` holds one backend per mode — modes naming the same
checkpoint share it — with the tokenizer and FIM order prompts for it must use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepfim.engine.api import CompletionBackend
from deepfim.engine.prompt import FimOrder
from deepfim.engine.tokenizer import Tokenizer
from deepfim.lsp_server.settings import MODES, Settings

logger = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The configured engine cannot be started (missing module, checkpoint, server)."""


@dataclass(frozen=True)
class BackendSpec:
    """Everything that decides which backend object serves a mode."""

    checkpoint: str | None = None  # None: the embedded model
    server: str | None = None  # "host:port": the LAN team server instead of a checkpoint
    token: str | None = None
    tls_ca: str | None = None

    def describe(self) -> str:
        if self.server:
            return self.server
        return Path(self.checkpoint).name if self.checkpoint else "embedded"


BackendFactory = Callable[[BackendSpec], CompletionBackend]


def make_backend(spec: BackendSpec) -> CompletionBackend:
    """Construct the backend for `spec` (may take seconds: loads weights or connects)."""
    if spec.server:
        try:
            from deepfim.engine.server.client import RemoteBackend
        except ImportError as exc:
            raise BackendUnavailable(f"the LAN client is not available ({exc})") from exc
        try:
            return RemoteBackend(spec.server, spec.token, tls_ca=spec.tls_ca)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"cannot use the team server {spec.server}: {exc}") from exc
    try:
        from deepfim.engine import DEFAULT_MODEL_DIR
        from deepfim.engine.local import EngineConfig, LocalBackend
    except ImportError as exc:
        raise BackendUnavailable(f"the in-process engine is not available ({exc})") from exc
    checkpoint = spec.checkpoint or DEFAULT_MODEL_DIR
    try:
        return LocalBackend(checkpoint, config=EngineConfig(threads=interactive_threads()))
    except (OSError, ValueError) as exc:  # missing or unreadable checkpoint, bad config
        raise BackendUnavailable(f"cannot load the checkpoint {checkpoint}: {exc}") from exc


def interactive_threads() -> int:
    """Engine threads beside an editor: $DEEPFIM_THREADS, else torch's default less one core.

    The editor and its other language servers work on the same keystrokes. Compute threads that
    outnumber the free cores stall one another at every barrier: on 2 cores beside one busy
    process, 2 threads took decode from 0.7 to 16 ms/token and a 512-token prefill from 48 to
    800 ms, where 1 thread stayed at 0.9 ms and 78 ms.
    """
    import torch

    from deepfim import env

    return env.torch_threads() or max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1))


def specs_for(settings: Settings) -> dict[str, BackendSpec]:
    """The backend spec of each mode; with a LAN server both modes use it."""
    if settings.server:
        remote = BackendSpec(server=settings.server, token=settings.token, tls_ca=settings.tls_ca)
        return dict.fromkeys(MODES, remote)
    return {
        "instant": BackendSpec(checkpoint=settings.checkpoint),
        "expert": BackendSpec(checkpoint=settings.expert_checkpoint or settings.checkpoint),
    }


@dataclass
class Engine:
    """A backend as one mode sees it."""

    mode: str
    spec: BackendSpec
    backend: CompletionBackend
    tokenizer: Tokenizer
    fim_order: FimOrder


class EngineSet:
    """The engines of both modes."""

    def __init__(self, engines: dict[str, Engine]) -> None:
        self._engines = engines

    @classmethod
    def load(cls, settings: Settings, factory: BackendFactory = make_backend) -> EngineSet:
        """Build (or connect) the backend of each mode; shared specs share one backend."""
        built: dict[BackendSpec, tuple[CompletionBackend, Tokenizer]] = {}
        engines = {}
        for mode, spec in specs_for(settings).items():
            if spec not in built:
                logger.info("starting the %s engine (%s)", mode, spec.describe())
                backend = factory(spec)
                built[spec] = (backend, Tokenizer.from_file(backend.tokenizer_path))
            backend, tokenizer = built[spec]
            order = FimOrder.SPM if "spm" in backend.fim_orders(mode) else FimOrder.PSM
            engines[mode] = Engine(mode, spec, backend, tokenizer, order)
        return cls(engines)

    @property
    def specs(self) -> dict[str, BackendSpec]:
        return {mode: engine.spec for mode, engine in self._engines.items()}

    def get(self, mode: str) -> Engine:
        return self._engines[mode]

    def describe(self) -> dict[str, str]:
        return {mode: engine.spec.describe() for mode, engine in self._engines.items()}

    def server(self) -> str:
        """ "in-process", or the LAN server's address."""
        return next((e.spec.server for e in self._engines.values() if e.spec.server), None) or "in-process"

    def stats(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for mode, engine in self._engines.items():
            try:
                out[mode] = engine.backend.stats()
            except Exception as exc:  # statistics must never break `deepfim/status`
                out[mode] = {"error": str(exc)}
        return out

    def close(self) -> None:
        for backend in {id(e.backend): e.backend for e in self._engines.values()}.values():
            try:
                backend.close()
            except Exception:
                logger.exception("closing a backend failed")
