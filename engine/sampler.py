"""Choosing the next token: greedy, or temperature with nucleus (top-p) sampling."""

from __future__ import annotations

import torch

from deepfim.engine.api import SamplingParams


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> tuple[int, float]:
    """Returns (token id, its log-probability under the unmodified distribution) from [V] logits."""
    logits = logits.float()
    logprobs = torch.log_softmax(logits, -1)
    if params.is_greedy:
        token = int(logits.argmax())
        return token, float(logprobs[token])
    probs = torch.softmax(logits / params.temperature, -1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        cumulative = sorted_probs.cumsum(-1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        cut = int((cumulative < params.top_p).sum()) + 1
        probs = torch.zeros_like(probs).scatter_(0, order[:cut], sorted_probs[:cut])
    token = int(torch.multinomial(probs, 1, generator=generator))
    return token, float(logprobs[token])


class StopChecker:
    """Finds the earliest stop string in generated text (also across token boundaries)."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = stop
        self.longest = max((len(s) for s in stop), default=0)

    def find(self, text: str, new_from: int) -> int | None:
        """Index where a stop string starts, looking only at text that could include new chars."""
        if not self.stop:
            return None
        start = max(0, new_from - self.longest + 1)
        hits = [i for s in self.stop if (i := text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def safe_prefix(self, text: str) -> int:
        """Length of text that can be streamed: no stop string can start inside the rest."""
        if not self.stop:
            return len(text)
        for k in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return len(text) - k
        return len(text)
