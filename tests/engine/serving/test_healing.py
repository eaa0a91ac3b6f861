"""Token healing (engine/serving/healing.py): which tokens may replace the text under the cursor."""

from __future__ import annotations

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.healing import HealingVocab


def test_healing_vocab_allows_exactly_the_tokens_consistent_with_the_rest():
    tok = Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")
    vocab = HealingVocab(tok, 8192)
    texts = [tok.decode([i]) for i in range(8192)]
    for rest in ["_", "normalize_", "    ", "        ", ".", "self", "é", "(x"]:
        want = {
            i for i, t in enumerate(texts)
            if t and "\ufffd" not in t and i not in tok.special_id_set and (t.startswith(rest) or rest.startswith(t))
        }  # fmt: skip
        assert set(vocab.allowed(rest).nonzero().flatten().tolist()) == want, rest
        assert want, rest
