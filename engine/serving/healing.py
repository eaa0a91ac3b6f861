"""Token healing's constraint: which tokens are consistent with the text still to reproduce.

When the prompt's last token is re-generated, every step may only pick a token whose text
starts with the rest of the healed text, or is a prefix of it. A scan of the vocabulary per
step costs ~15 ms at V4's 129K tokens; here the decoded vocabulary is sorted once, so the
tokens starting with `rest` are one `bisect` range and the tokens that are a prefix of `rest`
are at most `len(rest)` dictionary lookups.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

import torch

from deepfim.engine.model.tokenizer import Tokenizer


class HealingVocab:
    def __init__(self, tokenizer: Tokenizer, vocab_size: int) -> None:
        special = tokenizer.special_id_set
        texts = [(tokenizer.decode([i]), i) for i in range(vocab_size) if i not in special]
        texts = [(t, i) for t, i in texts if t and "\ufffd" not in t]  # partial UTF-8 bytes never heal
        texts.sort()
        self._texts = [t for t, _ in texts]
        self._ids = torch.tensor([i for _, i in texts], dtype=torch.long)
        self._by_text: dict[str, list[int]] = defaultdict(list)
        for t, i in texts:
            self._by_text[t].append(i)
        self.vocab_size = vocab_size

    def allowed(self, rest: str) -> torch.Tensor:
        """Boolean [vocab_size] mask of the tokens consistent with `rest` (non-empty)."""
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        lo = bisect.bisect_left(self._texts, rest)
        hi = bisect.bisect_left(self._texts, rest + "\U0010ffff", lo)
        mask[self._ids[lo:hi]] = True  # tokens that start with rest
        prefixes = [i for k in range(1, len(rest)) for i in self._by_text.get(rest[:k], ())]
        if prefixes:  # tokens that cover part of rest
            mask[torch.tensor(prefixes, dtype=torch.long)] = True
        return mask
