"""The language server's backend: one `CompletionBackend` for both modes, with the tokenizer
and FIM order prompts for it must use.

The backend itself is built by `deepfim.engine.backends.make_backend` (the in-process engine
routes each mode to its checkpoint; a team server does its own routing). This module only adds
what the editor side needs: the spec from the settings, with the engine's threads chosen to
leave a core to the editor.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

from deepfim.engine.api import CompletionBackend, Mode
from deepfim.engine.backends import BackendFactory, BackendSpec, make_backend
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.lsp_server.editor_settings import Settings

logger = logging.getLogger(__name__)


def interactive_threads() -> int:
    """Engine threads beside an editor: $DEEPFIM_THREADS, else all cores but one.

    The editor and its other language servers work on the same keystrokes. Compute threads that
    outnumber the free cores stall one another at every barrier: on 2 cores beside one busy
    process, 2 threads took decode from 0.7 to 16 ms/token and a 512-token prefill from 48 to
    800 ms, where 1 thread stayed at 0.9 ms and 78 ms.
    """
    from deepfim import env

    return env.torch_threads() or max(1, (os.cpu_count() or 1) - 1)


def spec_for(settings: Settings) -> BackendSpec:
    """The backend the settings ask for (threads are chosen when it is built, see `load`)."""
    if settings.server:
        return BackendSpec(server=settings.server, token=settings.token, tls_ca=settings.tls_ca)
    return BackendSpec(checkpoint=settings.checkpoint, expert_checkpoint=settings.expert_checkpoint, snapshots=True,
                       device=settings.device)  # fmt: skip


@dataclass
class BackendSession:
    """A built backend with its tokenizer and the serving profile of each mode's checkpoint."""

    spec: BackendSpec
    backend: CompletionBackend
    tokenizer: Tokenizer
    profiles: dict[Mode, ServingProfile]

    @classmethod
    def load(cls, spec: BackendSpec, factory: BackendFactory = make_backend) -> BackendSession:
        """Build (or connect) the backend; may take seconds."""
        if not spec.server and spec.threads is None:
            spec = dataclasses.replace(spec, threads=interactive_threads())
        logger.info("starting the engine (%s)", ", ".join(sorted(set(spec.summary().values()))))
        backend = factory(spec)
        try:
            tokenizer = Tokenizer.from_file(backend.tokenizer_path)
            profiles = {m: ServingProfile.from_dict(backend.serving_profile(m)) for m in Mode}
        except Exception:
            backend.close()
            raise
        return cls(spec, backend, tokenizer, profiles)

    def profile(self, mode: str) -> ServingProfile:
        return self.profiles[Mode(mode)]

    def fim_order(self, mode: str) -> FimOrder:
        return FimOrder(self.profile(mode).fim_order)

    def server(self) -> str:
        """ "in-process", or the LAN server's address."""
        return self.spec.server or "in-process"

    def stats(self) -> dict:
        try:
            return self.backend.stats()
        except Exception as exc:  # statistics must never break `deepfim/status`
            return {"error": str(exc)}

    def close(self) -> None:
        try:
            self.backend.close()
        except Exception:
            logger.exception("closing the backend failed")
