"""The op dispatchers (`deepfim.kernels.<op>`) that engine/model/transformer.py calls are drop-in
replacements for the torch refs: a CPU forward (prefill, chunked prefill and decode, with and
without quant_sim) through the dispatchers gives the logits of the same forward with the refs
swapped into the engine's namespace. On the CPU the dispatchers pick the C kernels for
decode-sized inputs (sparse attention, mHC), so the two agree to float32 rounding, not bit for bit."""

from __future__ import annotations

import pytest
import torch

from deepfim import kernels
from deepfim.engine.model import transformer as engine_model
from deepfim.engine.model.config import tiny_args
from deepfim.engine.model.transformer import Transformer, init_weights
from deepfim.kernels import compressor, mhc, moe, quant, sparse_attn
from deepfim.kernels.compressor import ref as compressor_ref
from deepfim.kernels.mhc import ref as mhc_ref
from deepfim.kernels.moe import ref as moe_ref
from deepfim.kernels.quant import ref as quant_ref
from deepfim.kernels.sparse_attn import ref as sparse_attn_ref

# the name the engine calls each op by -> (its dispatcher, its torch reference)
OPS = {
    "sparse_attention": (sparse_attn.sparse_attention, sparse_attn_ref.sparse_attention),
    "pool_windows": (compressor.pool_windows, compressor_ref.pool_windows),
    "hc_pre": (mhc.hc_pre, mhc_ref.hc_pre),
    "hc_post": (mhc.hc_post, mhc_ref.hc_post),
    "hc_head": (mhc.hc_head, mhc_ref.hc_head),
    "route": (moe.route, moe_ref.route),
    "fp8_round_trip": (quant.fp8_round_trip, quant_ref.fp8_round_trip),
    "fp4_round_trip": (quant.fp4_round_trip, quant_ref.fp4_round_trip),
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
    for name, (dispatcher, _) in OPS.items():
        assert getattr(engine_model, name) is dispatcher, name  # the engine calls the dispatcher
    with_dispatchers = run(model, ids)
    for name, (_, reference) in OPS.items():
        monkeypatch.setattr(engine_model, name, reference)
    with_refs = run(model, ids)
    assert with_refs.abs().max() > 0.1  # logits of order 1: the bound below is tight
    assert (with_dispatchers - with_refs).abs().max().item() <= 1e-5


def test_use_triton_needs_cuda_and_no_autograd():
    x = torch.randn(3, requires_grad=True)
    assert not kernels.use_triton(x.detach())  # CPU tensors: always the reference
    assert not kernels.use_triton(None)
