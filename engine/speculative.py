"""Draft proposals for speculative decoding: n-gram lookup in the context and the MTP block.

Code repeats itself; the tokens that followed the last few generated tokens elsewhere in the
prompt (the repository, the suffix) are a cheap and often correct guess. The engine verifies
drafts with one forward pass and keeps only the prefix the model itself would have produced,
so greedy output is unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class SpeculativeConfig:
    enabled: bool = True
    max_draft: int = 6  # draft tokens per verification
    ngram: int = 3  # tokens of context a lookup must match
    use_mtp: bool = True  # one-token drafts from the MTP block when the n-gram has none


class NgramDrafter:
    """Proposes the continuation of the most recent earlier occurrence of the last n tokens."""

    def __init__(self, tokens: list[int], n: int = 3) -> None:
        self.n = n
        self.tokens = list(tokens)
        self.index: dict[tuple[int, ...], int] = {}
        self._indexed = 0
        self._extend_index()

    def _extend_index(self) -> None:
        # position after each n-gram; later occurrences overwrite earlier ones (recency wins)
        toks, n = self.tokens, self.n
        for end in range(max(self._indexed, n), len(toks)):
            self.index[tuple(toks[end - n : end])] = end
        self._indexed = max(self._indexed, len(toks))

    def append(self, token: int) -> None:
        self.tokens.append(token)
        self._extend_index()

    def propose(self, k: int) -> list[int]:
        if len(self.tokens) < self.n or k <= 0:
            return []
        key = tuple(self.tokens[-self.n :])
        start = self.index.get(key)
        if start is None or start >= len(self.tokens):
            return []
        return self.tokens[start : start + k]


class DraftStats:
    """Acceptance counters (reported by `deepfim/status` and the benchmarks)."""

    def __init__(self) -> None:
        self.proposed = defaultdict(int)
        self.accepted = defaultdict(int)
        self.rounds = 0

    def record(self, source: str, proposed: int, accepted: int) -> None:
        self.proposed[source] += proposed
        self.accepted[source] += accepted
        self.rounds += 1

    def as_dict(self) -> dict:
        return {
            source: {
                "proposed": self.proposed[source],
                "accepted": self.accepted[source],
                "acceptance": self.accepted[source] / self.proposed[source] if self.proposed[source] else 0.0,
            }
            for source in self.proposed
        }
