"""Shared fixtures for engine tests: tiny random V4 checkpoints (with every layer type)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from engine_fixtures import randomize

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.config import tiny_args
from deepfim.engine.model.loader import save_checkpoint
from deepfim.engine.model.transformer import Transformer


@pytest.fixture(scope="session")
def tiny_model() -> Transformer:
    """4 layers (SWA, CSA, HCA, CSA) + MTP, hash and routed MoE, 16 indexer heads."""
    # the embedded model's vocabulary, so the checkpoint pairs with its tokenizer.json
    args = tiny_args(vocab_size=8192, index_n_heads=16, index_topk=16, n_hash_layers=2, fim_orders=("psm", "spm"))
    return randomize(Transformer(args), seed=0).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    """The tiny model saved in the official layout with the embedded model's tokenizer."""
    out = tmp_path_factory.mktemp("tiny_ckpt")
    save_checkpoint(tiny_model, out)
    shutil.copy(DEFAULT_MODEL_DIR / "tokenizer.json", out / "tokenizer.json")
    return out
