"""Which token a greedy candidate writes next, and which drafted tokens it keeps.

Greedy decoding takes the model's best token, except where index-aware decoding
(`identifiers.py`) turns down a name that does not exist. A verified draft keeps its tokens
while they are what the candidate would choose itself (n-gram and MTP drafts: the greedy
output is unchanged) or, for copy drafts, while the model finds each copied token likely
enough (the checkpoint's `copy_min_prob`: the model accepts a copy by its own likelihood,
not only when its best guess agrees).
"""

from __future__ import annotations

import math

import torch

from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.identifiers import IdentifierGuide, TokenShapes
from deepfim.engine.serving.sequence import ActiveRequest, CandidateState


class TokenChoice:
    """One checkpoint's greedy choices (its profile's decoding aids over its vocabulary)."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, profile: ServingProfile) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.profile = profile
        self.copy_threshold = math.log(profile.copy_min_prob)
        self._shapes: TokenShapes | None = None  # built at the first guided request

    def guide(self, req: ActiveRequest) -> IdentifierGuide | None:
        """The request's index-aware check, when the profile and its hints ask for one."""
        hints = req.request.hints
        if not self.profile.index_aware or hints is None or not (hints.members or hints.names):
            return None
        if req.guide is None:
            if self._shapes is None:
                self._shapes = TokenShapes(self.tokenizer, self.vocab_size)
            req.guide = IdentifierGuide(self._shapes, hints)
            req.line_context = self.tokenizer.decode(req.request.prompt[-64:]).rsplit("\n", 1)[-1]
        return req.guide

    def greedy(self, req: ActiveRequest, cand: CandidateState, logits: torch.Tensor) -> tuple[int, float]:
        """The best token the guide allows, and its log-probability."""
        guide = self.guide(req)
        token = guide.choose(logits, req.line_context + cand.text) if guide is not None else int(logits.argmax())
        return token, float(torch.log_softmax(logits.float(), -1)[token])

    def keep(
        self, req: ActiveRequest, cand: CandidateState, logits: torch.Tensor, drafts: list[int], source: str
    ) -> tuple[list[int], int, torch.Tensor]:
        """For logits [k+1, V] after [next_token, *drafts]: the tokens the candidate writes (the kept
        drafts, then its own choice where the first rejected draft was), how many drafts were kept,
        and the log-probabilities."""
        logprobs = torch.log_softmax(logits.float(), -1)
        guide = self.guide(req)
        text = req.line_context + cand.text
        chosen: list[int] = []
        kept = 0
        for j in range(len(drafts) + 1):
            draft = drafts[j] if j < len(drafts) else None
            choice = None
            if source == "copy" and draft is not None and float(logprobs[j, draft]) >= self.copy_threshold:
                choice = draft if guide is None or guide.allows(text, draft) else None
            if choice is None:
                choice = guide.choose(logits[j], text) if guide is not None else int(logits[j].argmax())
            chosen.append(choice)
            if draft is None or choice != draft:
                break
            kept += 1
            text += self.tokenizer.decode([draft])
        return chosen, kept, logprobs
