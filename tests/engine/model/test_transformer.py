"""Our engine against transformers' DeepseekV4ForCausalLM, the independent oracle.

Same random weights in both (every layer type, hash and routed MoE, 16 indexer heads so top-k
has no ties), loaded by our loader from what `save_pretrained` writes and again after
conversion to the official layout; logits compared for a full prefill, token by token on the
module path, and token by token through the serving runner (the C decode step on the CPU). A
second config gives its layers compression ratios other than DeepSeek's 4 and 128 (transformers
names the kinds in `layer_types` and their ratios in `compress_rates`).
"""

from __future__ import annotations

import pytest
import torch
from hf_oracle import hf_decode_logits, hf_prefill_logits, random_hf_model

from deepfim.engine.model.config import LayerKind, tiny_args
from deepfim.engine.model.loader import load_model, save_checkpoint
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.model_runner import ModelRunner

pytestmark = pytest.mark.slow
TOL = 1e-4
SEQ = 600  # > 128 window, 150 CSA entries, 4 HCA entries


CONFIGS = {
    "deepseek-ratios": {},
    # a heavily compressed layer of ratio 16 and CSA layers of ratio 8 (valid in DeepseekV4Config)
    "other-ratios": {
        "compress_ratios": (0, 8, 16, 8),
        "layer_kinds": (LayerKind.SLIDING, LayerKind.CSA, LayerKind.HCA, LayerKind.CSA),
    },
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def hf_pair(request, tmp_path_factory):
    args = tiny_args(index_n_heads=16, index_topk=16, n_hash_layers=2, n_mtp_layers=0, **CONFIGS[request.param])
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


def test_token_by_token_decode_matches_transformers(hf_pair, tiny_checkpoint):
    hf, hf_dir, ids = hf_pair
    ours = load_model(hf_dir)
    assert ours.args.layer_kinds == tuple(hf.config.layer_types)  # the kinds and ratios came through
    ref = hf_decode_logits(hf, ids)
    state = ours.new_state()
    with torch.no_grad():
        got = torch.cat([ours(ids[:, i : i + 1], state).logits for i in range(SEQ)], 1)
    assert (got - ref).abs().max().item() <= TOL
    runner = ModelRunner(ours, Tokenizer.from_file(tiny_checkpoint))  # the serving path: C step on the CPU
    assert runner.decode_step is not None
    state = ours.new_state()
    with torch.inference_mode():
        got = torch.cat([runner.forward([int(t)], state, "last").logits for t in ids[0]], 1)
    assert (got - ref).abs().max().item() <= TOL
