"""Shared fixtures for engine tests: tiny random V4 checkpoints (with every layer type)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.config import tiny_args
from deepfim.engine.loader import save_checkpoint
from deepfim.engine.model import Transformer, init_weights


def randomize(model: Transformer, seed: int = 0) -> Transformer:
    """Every parameter random, including the ones init leaves at 0/1 (sinks, ape, hc base...)."""
    init_weights(model, seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(("_base", "attn_sink", ".ape")):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("_scale"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5)
        for name, b in model.named_buffers():
            if name.endswith("gate.bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
    return model


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
