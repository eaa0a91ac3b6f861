"""The corpus token cache (engine/training/token_cache.py): built once, memory-mapped after."""

from __future__ import annotations

import numpy as np

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.training.token_cache import load_tokenized

TOK = DEFAULT_MODEL_DIR / "tokenizer.json"


def test_token_cache_is_reused_and_matches_encoding(tiny_corpus, tokenizer):
    first = load_tokenized(tiny_corpus, TOK, "train")
    caches = list(tiny_corpus.glob("tokens-*/train.ids.npy"))
    assert len(caches) == 1
    second = load_tokenized(tiny_corpus, TOK, "train")
    assert isinstance(second.tokens, np.memmap)
    for k, f in enumerate(second.files):
        assert second.ids(k).tolist() == tokenizer.encode(f.text) == first.ids(k).tolist()
