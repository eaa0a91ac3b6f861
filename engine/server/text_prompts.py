"""FIM prompts from the text of OpenAI-style requests, tokenized without freezing the server.

The `tokenizers` library holds the GIL while it encodes (2.3 MB of code: 4.8 s here, with every
other thread of the process stopped meanwhile): tokenizing a big body on the server's threads
freezes every user's stream. Texts of up to `INLINE_CHARS` characters are tokenized on a thread (a fraction of
a second at most); bigger ones in a worker process (started at the first), so they cost CPU but
never stall the event loop or the engine. The caller checks sizes before calling.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from deepfim.engine.model.prompt_format import FimOrder, fim_ids, repo_header_ids
from deepfim.engine.model.tokenizer import Tokenizer

INLINE_CHARS = 64 << 10

_worker_tokenizer: Tokenizer | None = None


def _load(path: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer.from_file(Path(path))


def _encode_in_worker(prefix: str, suffix: str) -> tuple[list[int], list[int]]:
    assert _worker_tokenizer is not None
    return _worker_tokenizer.encode(prefix), _worker_tokenizer.encode(suffix)


class TextPrompts:
    def __init__(self, tokenizer: Tokenizer, tokenizer_file: Path) -> None:
        self.tokenizer, self.tokenizer_file = tokenizer, tokenizer_file
        self._pool: ProcessPoolExecutor | None = None
        self.calls = self.worker_calls = 0  # texts tokenized, and of those sent to the worker process

    async def fim_prompt(self, prefix: str, suffix: str, order: str) -> list[int]:
        """The prompt the engine's own `build_fim_prompt` gives for this text and order."""
        loop = asyncio.get_running_loop()
        self.calls += 1
        size = len(prefix) + len(suffix)
        if size <= INLINE_CHARS:
            prefix_ids, suffix_ids = await loop.run_in_executor(None, self._encode, prefix, suffix)
        else:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(1, context, initializer=_load, initargs=(str(self.tokenizer_file),))
            self.worker_calls += 1
            prefix_ids, suffix_ids = await loop.run_in_executor(self._pool, _encode_in_worker, prefix, suffix)
        stable, volatile = fim_ids(self.tokenizer, prefix_ids, suffix_ids, FimOrder(order))
        return [*repo_header_ids(self.tokenizer, None), *stable, *volatile]

    def _encode(self, prefix: str, suffix: str) -> tuple[list[int], list[int]]:
        return self.tokenizer.encode(prefix), self.tokenizer.encode(suffix)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
