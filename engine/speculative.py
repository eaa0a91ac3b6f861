"""Draft proposals for speculative decoding: n-gram lookup in the context and the MTP block.

Code repeats itself; the tokens that followed the last few generated tokens elsewhere in the
prompt (the repository, the suffix) are a cheap and often correct guess. The engine verifies
drafts with one forward pass and keeps only the prefix the model itself would have produced,
so greedy output is unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch


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


class MtpDrafter:
    """Keeps a sequence's MTP block in step with the main model and drafts the token after next.

    MTP at position t reads the main model's final streams at t and the embedding of token t+1.
    The main forward hands over the streams of the positions it committed (`observe`);
    `advance` feeds the MTP block every pending position whose next token is known. During
    prefill only committed tokens count (so cached snapshots never depend on what follows);
    during decode the sampled, not yet committed token is included too, and the MTP output at
    that last position is the draft for the token after it.
    """

    def __init__(self, model) -> None:
        self.model = model

    @staticmethod
    def observe(state, streams: torch.Tensor) -> None:
        """streams [1, T, n, D] of the T positions the main model just committed."""
        state.last_hidden = streams if state.last_hidden is None else torch.cat([state.last_hidden, streams], 1)

    def advance(self, state, sequence: list[int]) -> int | None:
        """Runs MTP over pending positions that `sequence` (tokens by position) can follow.

        Returns the greedy draft for position len(sequence) when the last pending position
        was fed, else None.
        """
        pending = state.last_hidden
        if pending is None or pending.shape[1] == 0:
            return None
        first = state.mtp_pos
        follow = sequence[first + 1 : first + 1 + pending.shape[1]]
        if not follow:
            return None
        m = len(follow)
        logits = self.model.mtp_logits(pending[:, :m], torch.tensor([follow]), first, state, last_only=True)
        state.mtp_pos = first + m
        state.last_hidden = pending[:, m:]
        return int(logits[0, -1].argmax()) if first + m == len(sequence) - 1 and m == pending.shape[1] else None


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
