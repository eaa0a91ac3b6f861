"""The C decode step for several sequences in one call (continuous batching): each sequence gets
bit for bit what a call of its own gives, whatever else is in the batch, and that equals the
module path; undo records of a batched verification take back rejected drafts."""

from __future__ import annotations

import pytest
import torch
from test_decode_step import TOL, assert_same_state, held_in_bf16, make_model, model_named

from deepfim.engine.model.decode_step import DecodeStep


def _prefilled(model, lengths: list[int], seed: int):
    """One state per length, prefilled on the module path with random tokens."""
    gen = torch.Generator().manual_seed(seed)
    states = []
    with torch.no_grad():
        for n in lengths:
            state = model.new_state()
            if n:
                model(torch.randint(0, model.args.vocab_size, (1, n), generator=gen), state)
            states.append(state)
    return states


@pytest.mark.parametrize("name", ["all-layer-types", "bf16-checkpoint", "bf16-held", "sigmoid-no-shared-no-hash"])
def test_a_batch_gives_each_sequence_exactly_its_own_call(name):
    model = model_named(name)
    step = DecodeStep.for_model(model)
    assert step.bf16_products == (name == "bf16-held")
    lengths = [0, 3, 126, 127, 200, 255, 61]  # positions inside and at the edges of windows of every ratio
    batched, alone = _prefilled(model, lengths, 1), _prefilled(model, lengths, 1)
    gen = torch.Generator().manual_seed(2)
    for round_ in range(6):
        # decode steps of one token beside verifications of several and prefill pieces without logits
        sizes = [1 + (i * 5 + round_ * 3) % 16 for i in range(len(lengths))]
        modes = ["last", "all", "none", "last", "all", "last", "none"]
        ids = [torch.randint(0, model.args.vocab_size, (n,), generator=gen).tolist() for n in sizes]
        with torch.no_grad():
            together = step.batch(list(zip(ids, batched, modes, strict=True)))
            for i, state, mode, (logits, streams) in zip(ids, alone, modes, together, strict=True):
                own_logits, own_streams = step(torch.tensor([i]), state, mode)
                assert torch.equal(streams, own_streams)
                assert (logits is None) == (own_logits is None) and (logits is None or torch.equal(logits, own_logits))
    for a, b in zip(batched, alone, strict=True):
        assert_same_state(a, b)


def test_batched_calls_equal_the_module_path():
    model = make_model()
    step = DecodeStep.for_model(model)
    lengths = [5, 130, 64]
    fast, slow = _prefilled(model, lengths, 3), _prefilled(model, lengths, 3)
    gen = torch.Generator().manual_seed(4)
    for sizes in ([1, 1, 1], [4, 16, 2], [1, 9, 1], [16, 16, 16]):
        ids = [torch.randint(0, model.args.vocab_size, (n,), generator=gen).tolist() for n in sizes]
        with torch.no_grad():
            got = step.batch([(i, s, "all") for i, s in zip(ids, fast, strict=True)])
            for i, state, (logits, _) in zip(ids, slow, got, strict=True):
                want = model(torch.tensor([i]), state).logits
                assert (logits - want).abs().max().item() <= TOL
    for a, b in zip(fast, slow, strict=True):
        assert_same_state(a, b)


def test_keep_first_after_a_batched_verification():
    model = make_model()
    step = DecodeStep.for_model(model)
    fast, slow = _prefilled(model, [40, 131], 5), _prefilled(model, [40, 131], 5)
    drafts = [[3, 4, 5, 6, 7, 8], [9, 10, 11, 12]]
    keeps = [2, 1]
    with torch.no_grad():
        starts = [s.pos for s in fast]
        step.batch([(d, s, "all") for d, s in zip(drafts, fast, strict=True)])
        for state, start, keep in zip(fast, starts, keeps, strict=True):
            state.keep_first(keep, start, model.args.window_size)
        for state, d, keep in zip(slow, drafts, keeps, strict=True):
            model(torch.tensor([d[:keep]]), state)
    for a, b in zip(fast, slow, strict=True):
        assert_same_state(a, b)


def test_batches_that_step_c_cannot_take_are_refused():
    model = make_model()
    step = DecodeStep.for_model(model)
    state = model.new_state()
    with pytest.raises(ValueError, match="a state may appear only once"):
        step.batch([([1], state, "last"), ([2], state, "last")])
    with pytest.raises(ValueError, match="tokens per sequence"):
        step.batch([(list(range(step.max_tokens + 1)), state, "last")])
    many = _prefilled(model, [0] * (step.max_rows // step.max_tokens + 1), 0)
    with pytest.raises(ValueError, match="in all"):
        step.batch([(list(range(step.max_tokens)), s, "none") for s in many])
    assert state.pos == 0


def test_bf16_products_agree_with_the_module_path_at_the_first_position():
    """A model held in bf16 multiplies bf16 activations (matmul.h: AMX tiles where the CPU has
    them, else AVX512-BF16): 37 first tokens in one call, two groups of 16 and a part, against
    the module path's bf16 matmuls token by token. A wrong tile layout would be off by O(1);
    the two paths round differently (~0.01), and a router's near tie can send a token to other
    experts on one path (one of these 37 does), so the bound is on nearly every token."""
    model = held_in_bf16(make_model(bf16_values=True))
    step = DecodeStep.for_model(model)
    tokens = list(range(3, 40))
    with torch.no_grad():
        got = step.batch([([t], model.new_state(), "all") for t in tokens])
        diffs = sorted(
            (logits - model(torch.tensor([[t]]), model.new_state()).logits).abs().max().item()
            for t, (logits, _) in zip(tokens, got, strict=True)
        )
    assert diffs[len(diffs) // 2] <= 0.02 and diffs[-3] <= 0.03, diffs
