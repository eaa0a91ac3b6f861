"""The evaluation's configurations (the columns of its tables) and the backend each runs on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from deepfim.context.evidence import EvidenceOptions
from deepfim.context.prompt_builder import ContextLevel
from deepfim.engine.api import Mode
from deepfim.engine.backends import BackendSpec
from deepfim.engine.evaluation.harness import EvalConfig
from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.lsp_server.backend_session import BackendSession


@dataclass(frozen=True)
class RunConfig(EvalConfig):
    """An `EvalConfig` plus the serving-profile fields it changes (decoding aids, layout)."""

    overrides: tuple[tuple[str, object], ...] = ()

    def describe(self) -> str:
        parts = [self.model, f"context {self.level.value}"]
        off = [f.name for f in dataclasses.fields(self.evidence) if not getattr(self.evidence, f.name)]
        if off:
            parts.append("evidence without " + ", ".join(off))
        parts += [f"{k}={v}" for k, v in self.overrides]
        return "; ".join(parts)


R = ContextLevel.REPOSITORY
MAIN = (
    RunConfig("copy/none", "copy", ContextLevel.NONE),
    RunConfig("copy/file", "copy", ContextLevel.FILE),
    RunConfig("copy/repository", "copy", R),
    RunConfig("model/none", level=ContextLevel.NONE),
    RunConfig("model/file", level=ContextLevel.FILE),
    RunConfig("model/repository", level=R),
)
ABLATIONS = (
    RunConfig("-similar", level=R, evidence=EvidenceOptions(similar=False)),
    RunConfig("-definitions", level=R, evidence=EvidenceOptions(members=False, definitions=False)),
    RunConfig("-index-aware", level=R, overrides=(("index_aware", False),)),
    RunConfig("-copy-drafts", level=R, overrides=(("copy_drafts", False),)),
    RunConfig("files-layout", level=R, overrides=(("prompt_layout", "files"),)),
)


def make_session(checkpoint: Path | None, cfg: RunConfig, device: str = "cpu") -> BackendSession:
    """A fresh in-process backend for `cfg` (its own prefix cache) as the language server holds it."""
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.serving.local_backend import LocalBackend, LocalBackendConfig
    from deepfim.lsp_server.backend_session import interactive_threads

    path = checkpoint or DEFAULT_MODEL_DIR
    config = LocalBackendConfig(threads=interactive_threads(), profile_overrides=cfg.overrides, device=device)
    backend = LocalBackend(path, config=config)
    profiles = {m: ServingProfile.from_dict(backend.serving_profile(m)) for m in Mode}
    spec = BackendSpec(checkpoint=str(checkpoint) if checkpoint else None, device=device)
    return BackendSession(spec, backend, Tokenizer.from_file(backend.tokenizer_path), profiles)
