"""The one place a `CompletionBackend` is built: the in-process engine or a team-server client.

`BackendSpec` says everything that decides it: the checkpoint of each mode (the in-process
`LocalBackend` is the only router from mode to checkpoint; modes naming the same checkpoint
share its model and prefix cache) or the address of a LAN team server (which routes modes
itself). The language server, `deepfim complete`, `deepfim serve` and the benchmarks all call
`make_backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepfim.engine.api import CompletionBackend, Mode


class BackendUnavailable(RuntimeError):
    """The configured engine cannot be started (missing checkpoint, unreachable server)."""


@dataclass(frozen=True)
class BackendSpec:
    """Which backend serves the modes.

    Attributes:
        checkpoint: instant mode's checkpoint directory; None: the embedded model.
        expert_checkpoint: expert mode's; None: the same as `checkpoint`.
        server: "host:port" of a LAN team server instead of checkpoints.
        token: the user token for `server`.
        tls_ca: CA certificate to trust for `server`.
        threads: CPU threads of the in-process engine (None: torch's default).
        device: where the in-process engine runs ("cpu", "cuda", "cuda:N").
        keep_quantized: keep FP8/FP4 weights in checkpoint form (None: on CUDA, or when only that
            fits; engine/model/device_setup.py).
    """

    checkpoint: str | None = None
    expert_checkpoint: str | None = None
    server: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    threads: int | None = None
    snapshots: bool = False  # persist the repository part's state on disk (the language server)
    device: str = "cpu"
    keep_quantized: bool | None = None
    model_loader: Callable[[Path], object] | None = None  # rank 0 of a parallel engine (`serve --tp/--ep`)
    hot_experts: int | None = None  # routed experts in host memory, this many per layer on the device

    def checkpoint_for(self, mode: Mode) -> str | None:
        if mode is Mode.EXPERT and self.expert_checkpoint:
            return self.expert_checkpoint
        return self.checkpoint

    def describe(self, mode: Mode) -> str:
        """What serves `mode`, as shown to users ("embedded", a checkpoint name, host:port)."""
        if self.server:
            return self.server
        checkpoint = self.checkpoint_for(mode)
        return Path(checkpoint).name if checkpoint else "embedded"

    def summary(self) -> dict[str, str]:
        """`describe` of every mode, keyed by mode name (for `deepfim/status` and reports)."""
        return {mode.value: self.describe(mode) for mode in Mode}


BackendFactory = Callable[[BackendSpec], CompletionBackend]


def make_backend(spec: BackendSpec) -> CompletionBackend:
    """Construct the backend for `spec` (may take seconds: loads weights or connects)."""
    if spec.server:
        from deepfim.engine.server.client import RemoteBackend

        try:
            return RemoteBackend(spec.server, spec.token, tls_ca=spec.tls_ca)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"cannot use the team server {spec.server}: {exc}") from exc
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.serving.local_backend import LocalBackend, LocalBackendConfig

    checkpoint = spec.checkpoint or DEFAULT_MODEL_DIR
    try:
        config = LocalBackendConfig(threads=spec.threads, snapshots=spec.snapshots, device=spec.device,
                                    keep_quantized=spec.keep_quantized, model_loader=spec.model_loader,
                                    hot_experts=spec.hot_experts)  # fmt: skip
        return LocalBackend(checkpoint, spec.expert_checkpoint, config)
    except (OSError, ValueError) as exc:  # missing or unreadable checkpoint, bad config
        raise BackendUnavailable(f"cannot load the checkpoint {checkpoint}: {exc}") from exc
