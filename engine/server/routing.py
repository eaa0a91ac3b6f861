"""`ModeRouter`: one `CompletionBackend` made of one backend per mode.

`deepfim serve --expert-checkpoint` serves expert mode from a bigger checkpoint: requests go
to the backend of their `mode`. Clients receive one tokenizer, so every checkpoint behind
the router must use the same tokenizer.json (checked by content hash).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from deepfim.engine.api import CompletionBackend, CompletionHandle, CompletionRequest


def _tokenizer_hash(path: str) -> str:
    p = Path(path)
    return hashlib.sha256((p / "tokenizer.json" if p.is_dir() else p).read_bytes()).hexdigest()


class ModeRouter:
    def __init__(self, backends: dict[str, CompletionBackend]) -> None:
        if not backends:
            raise ValueError("ModeRouter needs at least one backend")
        hashes = {mode: _tokenizer_hash(b.tokenizer_path) for mode, b in backends.items()}
        if len(set(hashes.values())) > 1:
            raise ValueError(
                "the checkpoints use different tokenizers "
                f"({', '.join(f'{m}: {backends[m].tokenizer_path}' for m in hashes)}); one server serves one tokenizer"
            )
        self.backends = dict(backends)
        self.tokenizer_path = next(iter(backends.values())).tokenizer_path

    def _for(self, mode: str) -> CompletionBackend:
        backend = self.backends.get(mode)
        if backend is None:
            raise ValueError(f"mode {mode!r} is not served (serving {sorted(self.backends)})")
        return backend

    def fim_orders(self, mode: str) -> tuple[str, ...]:
        return self._for(mode).fim_orders(mode)

    def submit(self, request: CompletionRequest, on_text=None) -> CompletionHandle:
        return self._for(request.mode).submit(request, on_text)

    def stats(self) -> dict:
        return {"modes": {mode: b.stats() for mode, b in self.backends.items()}}

    def close(self) -> None:
        for backend in {id(b): b for b in self.backends.values()}.values():
            backend.close()
