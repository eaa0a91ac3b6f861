"""Incremental V4 state (engine/model/state.py): chunked prefill from any position and decode equal
one full forward; snapshots stay isolated from later appends."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import randomize

from deepfim.engine.model.config import tiny_args
from deepfim.engine.model.transformer import Transformer

SEQ = 700


@pytest.fixture(scope="module")
def model():
    """All layer types; index_topk covers every entry, so chunking cannot flip a near-tie at the
    top-k boundary (sparse selection is checked against transformers in test_transformer.py)."""
    m = randomize(Transformer(tiny_args(index_n_heads=16, index_topk=256, n_hash_layers=2)), seed=0).eval()
    with torch.no_grad():
        m.head.weight.mul_(0.25)  # logits of order 1: the 1e-5 bound is absolute
    return m


def run_chunks(model, ids, chunk):
    state = model.new_state()
    outs = []
    with torch.no_grad():
        for start in range(0, ids.shape[1], chunk):
            outs.append(model(ids[:, start : start + chunk], state).logits)
    return torch.cat(outs, 1), state


@pytest.mark.parametrize("chunk", [1, 7, 128, 300])
def test_chunked_prefill_then_decode_equals_full_forward(model, chunk):
    ids = torch.randint(0, model.args.vocab_size, (1, SEQ), generator=torch.Generator().manual_seed(chunk))
    with torch.no_grad():
        full = model(ids).logits
    prefill_len = SEQ - 40
    got, state = run_chunks(model, ids[:, :prefill_len], chunk)
    with torch.no_grad():  # then decode the rest one token at a time
        decoded = [model(ids[:, i : i + 1], state).logits for i in range(prefill_len, SEQ)]
    got = torch.cat([got, *decoded], 1)
    assert state.pos == SEQ
    assert (got - full).abs().max().item() <= 1e-5


def test_state_counts_compressed_entries(tiny_model):
    ids = torch.randint(0, tiny_model.args.vocab_size, (1, 515))
    _, state = run_chunks(tiny_model, ids, 100)
    ratios = tiny_model.args.compress_ratios
    for ratio, cache in zip(ratios, state.layers, strict=True):
        assert cache.window.shape[1] == tiny_model.args.window_size - 1
        if ratio:
            assert cache.comp.entries.count == 515 // ratio
            assert cache.comp.pending_kv.shape[1] == 515 % ratio
        if ratio == 4:
            assert cache.index.entries.count == 515 // 4


def test_snapshot_is_isolated_from_later_appends(tiny_model):
    """A snapshot keeps its view while the live state appends, and a fork copies on divergence."""
    ids = torch.randint(0, tiny_model.args.vocab_size, (1, 400), generator=torch.Generator().manual_seed(5))
    other = ids[:, 256:300].flip(1)
    with torch.no_grad():
        state = tiny_model.new_state()
        tiny_model(ids[:, :256], state)
        snap = state.snapshot()
        a = tiny_model(ids[:, 256:300], state).logits  # the live state appends past the snapshot
        b = tiny_model(other, snap).logits  # the fork diverges from the same 256-token prefix
        a_next = tiny_model(ids[:, 300:340], state).logits  # the live state after the fork's appends
        untouched = _fresh(tiny_model, ids[:, :256])  # the same calls on a state nobody forked
        a_ref = tiny_model(ids[:, 256:300], untouched).logits
        a_next_ref = tiny_model(ids[:, 300:340], untouched).logits
        b_ref = tiny_model(other, _fresh(tiny_model, ids[:, :256])).logits
    assert snap.pos == 300 and state.pos == 340
    assert torch.equal(a, a_ref)
    assert torch.equal(b, b_ref)  # the snapshot saw only the prefix, not the live state's appends
    assert torch.equal(a_next, a_next_ref)  # the original branch is unharmed by the fork's appends
    assert not torch.allclose(a, b)


def _fresh(model, prefix):
    state = model.new_state()
    model(prefix, state)
    return state


def test_mtp_incremental_equals_full(model):
    ids = torch.randint(0, model.args.vocab_size, (1, 300), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        streams = model(ids, logits="none").streams
        full = model.mtp_logits(streams[:, :-1], ids[:, 1:], 0)
        state = model.new_state()
        parts = [
            model.mtp_logits(streams[:, s : min(s + 50, 299)], ids[:, s + 1 : s + 51], s, state)
            for s in range(0, 299, 50)
        ]
    got = torch.cat(parts, 1)
    assert got.shape == full.shape
    assert (got - full).abs().max().item() <= 1e-5


def test_position_limit_is_enforced(tiny_model):
    import dataclasses

    from deepfim.engine.model.transformer import Transformer

    small = Transformer(dataclasses.replace(tiny_model.args, max_seq_len=16))
    with pytest.raises(ValueError, match="max_seq_len=16"):
        small(torch.zeros(1, 17, dtype=torch.long))
