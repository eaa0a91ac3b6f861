"""The op dispatchers (`deepfim.kernels.<op>`) are drop-in replacements for the refs the engine
imports: swapped into engine/model/transformer.py's namespace, a CPU forward (prefill, chunked prefill and
decode, with and without quant_sim) gives bit-identical logits. This is what makes switching the
engine's imports to the dispatchers a no-op on the CPU."""

from __future__ import annotations

import pytest
import torch

from deepfim import kernels
from deepfim.engine.model import transformer as engine_model
from deepfim.engine.model.config import tiny_args
from deepfim.engine.model.transformer import Transformer, init_weights
from deepfim.kernels import compressor, mhc, moe, quant, sparse_attn

DISPATCHERS = {
    "sparse_attention": sparse_attn.sparse_attention,
    "pool_windows": compressor.pool_windows,
    "hc_pre": mhc.hc_pre,
    "hc_post": mhc.hc_post,
    "hc_head": mhc.hc_head,
    "route": moe.route,
    "fp8_round_trip": quant.fp8_round_trip,
    "fp4_round_trip": quant.fp4_round_trip,
}


def run(model: Transformer, ids: torch.Tensor) -> torch.Tensor:
    """Full prefill, then the same tokens as chunked prefill + 3 decode steps; all logits."""
    with torch.no_grad():
        full = model(ids).logits
        state = model.new_state()
        parts = [model(ids[:, :100], state).logits, model(ids[:, 100:-3], state).logits]
        parts += [model(ids[:, i : i + 1], state).logits for i in range(ids.shape[1] - 3, ids.shape[1])]
    return torch.cat([full, *parts], 1)


@pytest.mark.parametrize("quant_sim", [False, True], ids=["fp32", "quant_sim"])
def test_engine_logits_unchanged_with_dispatchers(monkeypatch, quant_sim):
    model = Transformer(tiny_args(index_n_heads=8, index_topk=4, n_hash_layers=1, quant_sim=quant_sim))
    init_weights(model, seed=1)
    with torch.no_grad():  # non-zero sinks, mHC bases and router bias so every path matters
        for name, p in model.named_parameters():
            if name.endswith(("attn_sink", "_base")):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
        for name, b in model.named_buffers():
            if name.endswith("gate.bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=torch.Generator().manual_seed(3)))
    model.eval()
    ids = torch.randint(0, model.args.vocab_size, (1, 300), generator=torch.Generator().manual_seed(0))
    expected = run(model, ids)
    for name, fn in DISPATCHERS.items():
        assert hasattr(engine_model, name), name  # the engine still imports this op by this name
        monkeypatch.setattr(engine_model, name, fn)
    assert torch.equal(run(model, ids), expected)


def test_use_triton_needs_cuda_and_no_autograd():
    x = torch.randn(3, requires_grad=True)
    assert not kernels.use_triton(x.detach())  # CPU tensors: always the reference
    assert not kernels.use_triton(None)
