"""Helpers shared by the engine tests (a uniquely named module: `conftest` names collide)."""

from __future__ import annotations

import torch

from deepfim.engine.model.transformer import Transformer, init_weights


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
