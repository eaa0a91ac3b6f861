"""kernels/indexer: the C selection (select.c) against the torch form of the lightning indexer:
top-k sets of the same scores for every query (keys whose scores tie, exactly or within float32
rounding, may swap), best first, -1 where fewer than k keys are visible, exact ties broken
towards the lower index; and `Indexer.forward` selecting alike on both paths."""

from __future__ import annotations

import pytest
import torch

from deepfim.engine.model.config import tiny_args
from deepfim.engine.model.transformer import Transformer, init_weights
from deepfim.kernels.indexer import cpu

pytestmark = pytest.mark.skipif(cpu._lib() is None, reason="no C compiler")


def assert_same_choice(got, want, scores, visible):
    """Per query: as many keys chosen, the same scores (to float32 rounding) in the same order."""
    for i in range(got.shape[0]):
        for j in range(got.shape[1]):
            n = min(got.shape[2], int(visible[j]))
            assert got[i, j, n:].tolist() == [-1] * (got.shape[2] - n)
            mine, theirs = scores[i, j, got[i, j, :n]], scores[i, j, want[i, j, :n]]
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
            assert torch.all(mine[:-1] >= mine[1:] - 1e-5)  # best first


def torch_select(q, w, keys, visible, k):
    """The torch form: scores [B, T, C] summed over heads, invisible keys at -inf, top-k."""
    s = (torch.relu(q @ keys.unsqueeze(1).transpose(-1, -2)) * w.unsqueeze(-1)).sum(2)
    c = keys.shape[1]
    s = s.masked_fill(torch.arange(c)[None, :] >= visible[:, None], float("-inf"))
    top = s.topk(k, dim=-1)
    return torch.where(top.indices >= visible[None, :, None], -1, top.indices), s


@pytest.mark.parametrize(
    ("b", "t", "h", "d", "c", "k"),
    [(1, 5, 8, 32, 200, 16), (2, 3, 3, 7, 37, 8), (1, 16, 1, 33, 16, 4), (1, 4, 4, 64, 513, 64), (1, 3, 2, 8, 5, 8),
     # heads in groups of 8, 4 and 1; at least k whole blocks of 16 keys (the bar from the blocks' maxima)
     (1, 6, 12, 32, 1000, 16), (2, 4, 13, 16, 2055, 64)],
)  # fmt: skip
def test_the_c_selection_keeps_the_torch_top_k(b, t, h, d, c, k):
    g = torch.Generator().manual_seed(b * 1000 + c)
    q, keys = torch.randn(b, t, h, d, generator=g), torch.randn(b, c, d, generator=g)
    w = torch.rand(b, t, h, generator=g)
    visible = torch.arange(c - t + 1, c + 1).clamp(min=0) if c > t else torch.arange(1, t + 1).clamp(max=c)
    k = min(k, c)
    got = cpu.select(q, w, keys, visible, k)
    want, scores = torch_select(q, w, keys, visible, k)
    assert got.shape == want.shape == (b, t, k)
    assert_same_choice(got, want, scores, visible)


@pytest.mark.parametrize(("n", "k"), [(3000, 64), (2000, 5), (70, 4)])
def test_exact_ties_go_to_the_lower_index_over_many_blocks(n, k):
    """Scores from a few values (one head, one dim: the score is the key): many keys tie with the
    k-th best, so the bar and the candidate buffer must keep the lowest indices among them."""
    values = torch.randint(0, 4, (1, n, 1), generator=torch.Generator().manual_seed(n)).float()
    got = cpu.select(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1), values, torch.tensor([n]), k)
    want = sorted(range(n), key=lambda e: (-values[0, e, 0].item(), e))[:k]
    assert got[0, 0].tolist() == want


def test_ties_go_to_the_lower_index_and_nothing_visible_selects_nothing():
    keys = torch.ones(1, 20, 4)  # every key scores the same
    q, w = torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1)
    got = cpu.select(q, w, keys, torch.tensor([20, 0]), 5)
    assert got[0, 0].tolist() == [0, 1, 2, 3, 4]
    assert got[0, 1].tolist() == [-1] * 5
    assert cpu.select(q, w, keys, torch.tensor([20, 3]), 0).shape == (1, 2, 0)


def test_indexer_forward_selects_alike_with_and_without_the_c_path():
    args = tiny_args(max_seq_len=512)
    model = init_weights(Transformer(args), 0).eval()
    ids = torch.randint(0, args.vocab_size, (1, 300), generator=torch.Generator().manual_seed(0))
    layer = next(b.attn for b in model.layers if b.attn.indexer is not None)
    picked = {}

    def capture(name):
        def hook(module, inputs, output):
            picked[name] = output
            picked["visible"] = inputs[5]

        return hook

    with torch.inference_mode():
        handle = layer.indexer.register_forward_hook(capture("c"))
        model(ids)
        handle.remove()
        forward = layer.indexer.forward
        layer.indexer.forward = lambda *a: forward(*a[:6], True)  # need_scores: the torch form
        handle = layer.indexer.register_forward_hook(capture("torch"))
        model(ids)
        handle.remove()
    (got, no_scores), (want, scores) = picked["c"], picked["torch"]
    assert no_scores is None and got.shape == want.shape and (got >= 0).sum() > 100
    assert torch.isfinite(scores.gather(-1, want.clamp(min=0))[want >= 0]).all()  # a model, not NaN
    assert_same_choice(got, want, scores, picked["visible"])


def test_training_held_out_loss_keeps_the_torch_form():
    """Inside `references_only()` (the held-out loss of a training run) the C path stands aside."""
    from deepfim.kernels import references_only

    q, keys = torch.randn(1, 2, 2, 8), torch.randn(1, 5, 8)
    assert cpu.handles(q, keys)
    with references_only():
        assert not cpu.handles(q, keys)
