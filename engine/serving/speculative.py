"""Draft proposals for speculative decoding: n-gram lookup in the context and the MTP block.

Code repeats itself; the tokens that followed the last few generated tokens elsewhere in the
prompt (the repository, the suffix) are a cheap and often correct guess. The engine verifies
drafts with one forward pass and keeps only the prefix the model itself would have produced,
so greedy output is unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SpeculativeConfig:
    enabled: bool = True
    max_draft: int = 6  # draft tokens per verification
    ngram: int = 3  # tokens of context a lookup must match
    use_mtp: bool = True  # one-token drafts from the MTP block when the n-gram has none
    # Rows of a batched step beyond which drafts stop paying: the C step's cost per row falls
    # from 0.85 ms (1 row) to 0.34 ms (16 rows) and then stays near 0.3 ms (embedded model, one
    # thread), so past 16 rows a rejected draft costs about what a real token does.
    step_rows: int = 16

    def drafts_per_sequence(self, sequences: int) -> int:
        """Draft tokens each of `sequences` decoding sequences may verify in one step."""
        return min(self.max_draft, max(0, self.step_rows // max(1, sequences) - 1))


MAX_COPY_MATCH = 512


class DraftLength:
    """How many n-gram draft tokens pay for their verification.

    A call of T tokens costs what this runner's own single-sequence decode calls of T tokens
    took (a running mean per T; an unseen T is assumed to cost what one token does, so it gets
    tried and measured). A draft of d tokens whose tokens are each kept with probability `kept`
    (the candidate's recent share) yields 1 + kept + kept^2 + ... + kept^d tokens; the length
    with the most tokens per millisecond wins, 0 when plain decoding beats every draft. On the C
    step (CPU) a call of 7 tokens costs ~3x one token, so a draft must keep ~2 of its 6 to pay;
    on a GPU a few more rows cost nearly nothing and drafts always run.
    """

    def __init__(self, max_tokens: int) -> None:
        self._ms = [0.0] * (max_tokens + 2)
        self._seen = [0] * (max_tokens + 2)

    def observe(self, tokens: int, ms: float) -> None:
        if 0 < tokens < len(self._ms):
            n = self._seen[tokens] = min(self._seen[tokens] + 1, 16)
            self._ms[tokens] += (ms - self._ms[tokens]) / n  # the mean of the last ~16

    def cost(self, tokens: int) -> float | None:
        return self._ms[tokens] if tokens < len(self._ms) and self._seen[tokens] else None

    def best(self, kept: float, room: int) -> int:
        one = self.cost(1)
        if one is None or room <= 0:
            return room
        best, rate, gain, power = 0, 1.0 / max(one, 1e-6), 1.0, 1.0
        for d in range(1, min(room, len(self._ms) - 2) + 1):
            power *= kept
            gain += power
            cost = self.cost(d + 1)
            cost = one if cost is None else cost
            if gain / max(cost, 1e-6) > rate:
                best, rate = d, gain / max(cost, 1e-6)
        return best


class NgramDrafter:
    """Proposes the continuation of the most recent earlier occurrence of the last n tokens.

    The tokens live in a numpy buffer and each proposal scans it (vectorised, ~0.1 ms per 100K
    tokens): a per-request Python index of a 100K-token prompt took ~100 ms to build, on the
    keystroke's path.
    """

    def __init__(self, tokens: list[int], n: int = 3) -> None:
        self.n = n
        self._buf = np.empty(max(2 * len(tokens), 256), dtype=np.int64)
        self._buf[: len(tokens)] = tokens
        self._len = len(tokens)

    @property
    def tokens(self) -> list[int]:
        return self._buf[: self._len].tolist()

    def append(self, token: int) -> None:
        if self._len == len(self._buf):
            self._buf = np.concatenate([self._buf, np.empty_like(self._buf)])
        self._buf[self._len] = token
        self._len += 1

    def propose(self, k: int) -> list[int]:
        n, length = self.n, self._len
        if length <= n or k <= 0:
            return []
        seq = self._buf[:length]
        # ends e (exclusive) of earlier occurrences: seq[e - n : e] == seq[-n:], e < length
        match = seq[n - 1 : length - 1] == seq[-1]
        for back in range(1, n):
            match &= seq[n - 1 - back : length - 1 - back] == seq[-1 - back]
        hits = np.flatnonzero(match)
        if not len(hits):
            return []
        start = int(hits[-1]) + n
        return seq[start : start + k].tolist()


class CopyDrafter(NgramDrafter):
    """Proposes what followed the *longest* earlier occurrence of the text before the cursor.

    Unlike the n-gram drafts (a speed-up: kept only where greedy agrees), copy drafts are
    accepted by the model's own likelihood (`ServingProfile.copy_min_prob`): when the prompt
    holds the answer (code the repository already has), a small model's argmax need not agree
    token for token for the copy to be right. Occurrences inside `excluded` ranges (the cursor
    file's own text, whose continuation at the cursor is the suffix) are not copied from.
    """

    def __init__(self, tokens: list[int], min_match: int, excluded: tuple[tuple[int, int], ...] = ()) -> None:
        super().__init__(tokens, n=2)
        self.min_match = min_match
        self.excluded = excluded

    def propose(self, k: int) -> list[int]:
        length = self._len
        if length <= self.min_match or k <= 0:
            return []
        seq = self._buf[:length]
        match = seq[1 : length - 1] == seq[-1]
        match &= seq[: length - 2] == seq[-2]
        ends = np.flatnonzero(match) + 2  # seq[e-2:e] == seq[-2:], e < length
        for a, b in self.excluded:
            ends = ends[(ends < a) | (ends >= b)]
        n = 2  # every end in `ends` matches the last n tokens; extend while more than one does
        while len(ends) and n < MAX_COPY_MATCH:
            back = ends - n - 1
            ok = (back >= 0) & (seq[np.maximum(back, 0)] == seq[length - n - 1])
            if not ok.any():
                break
            ends, n = ends[ok], n + 1
        if not len(ends) or n < self.min_match:
            return []
        start = int(ends[-1])  # the latest of the longest occurrences
        return seq[start : start + k].tolist()


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
