"""Our engine against transformers' DeepseekV4ForCausalLM, the independent oracle.

Same random weights in both (every layer type, hash and routed MoE, 16 indexer heads so top-k
has no ties), loaded by our loader from what `save_pretrained` writes and again after
conversion to the official layout; logits compared for a full prefill and token by token.
"""

from __future__ import annotations

import pytest
import torch
from hf_oracle import hf_decode_logits, hf_prefill_logits, random_hf_model

from deepfim.engine.config import tiny_args
from deepfim.engine.loader import load_model, save_checkpoint

pytestmark = pytest.mark.slow
TOL = 1e-4
SEQ = 600  # > 128 window, 150 CSA entries, 4 HCA entries


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    args = tiny_args(index_n_heads=16, index_topk=16, n_hash_layers=2, n_mtp_layers=0)
    hf = random_hf_model(args, seed=7)
    hf_dir = tmp_path_factory.mktemp("hf")
    hf.save_pretrained(hf_dir)
    ids = torch.randint(0, args.vocab_size, (1, SEQ), generator=torch.Generator().manual_seed(3))
    return hf, hf_dir, ids


def test_prefill_matches_transformers_from_save_pretrained(hf_pair):
    hf, hf_dir, ids = hf_pair
    ours = load_model(hf_dir)
    with torch.no_grad():
        got = ours(ids).logits
    ref = hf_prefill_logits(hf, ids)
    assert (got - ref).abs().max().item() <= TOL


def test_prefill_matches_transformers_after_conversion_to_official_layout(hf_pair, tmp_path):
    hf, hf_dir, ids = hf_pair
    save_checkpoint(load_model(hf_dir), tmp_path)
    names = __import__("safetensors").safe_open(str(tmp_path / "model.safetensors"), "pt").keys()
    assert "layers.1.attn.wq_a.weight" in names and "layers.2.ffn.experts.0.w1.weight" in names
    ours = load_model(tmp_path)
    with torch.no_grad():
        got = ours(ids).logits
    assert (got - hf_prefill_logits(hf, ids)).abs().max().item() <= TOL


def test_token_by_token_decode_matches_transformers(hf_pair):
    hf, hf_dir, ids = hf_pair
    ours = load_model(hf_dir)
    state = ours.new_state()
    with torch.no_grad():
        got = torch.cat([ours(ids[:, i : i + 1], state).logits for i in range(SEQ)], 1)
    ref = hf_decode_logits(hf, ids)
    assert (got - ref).abs().max().item() <= TOL
