"""MoE: routing by hand, the experts' decode path against the grouped path, and the Triton routing
kernel (CPU interpreter) against ref.scores_from_logits + ref.route."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_checks import assert_close

from deepfim.kernels import moe
from deepfim.kernels.moe import ref


def by_expert(weights: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows sorted by expert id, so unordered top-k results compare exactly."""
    order = idx.argsort(-1)
    return weights.gather(-1, order), idx.gather(-1, order)


def test_route_bias_selects_but_does_not_weigh():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5]])
    bias = torch.tensor([0.0, -1.0, 1.0, 0.0])  # biased: [0.9, -0.2, 1.1, 0.5]
    weights, idx = by_expert(*ref.route(scores, 2, 1.5, bias))
    assert idx.tolist() == [[0, 2]]
    assert_close("weights", torch.tensor([[0.9 / 1.0 * 1.5, 0.1 / 1.0 * 1.5]]), weights, atol=1e-6, rtol=1e-6)
    weights, idx = ref.route(scores, 2, 2.5, fixed_idx=torch.tensor([[3, 1]]))
    assert idx.tolist() == [[3, 1]]
    assert_close("fixed", torch.tensor([[0.5 / 1.3 * 2.5, 0.8 / 1.3 * 2.5]]), weights, atol=1e-6, rtol=1e-6)


def test_swiglu_clamps_gate_above_and_up_both_sides():
    gate = torch.tensor([20.0, -20.0, 1.0])
    up = torch.tensor([-30.0, 5.0, 30.0])
    expected = F.silu(torch.tensor([10.0, -20.0, 1.0])) * torch.tensor([-10.0, 5.0, 10.0])
    assert torch.equal(ref.swiglu(gate, up, 10.0), expected)
    assert torch.equal(ref.swiglu(gate, up, 0.0), F.silu(gate) * up)


def test_experts_decode_path_matches_grouped_path():
    """One token (decode: per-expert views) against the same token inside a batch (grouped GEMMs)."""
    g = torch.Generator().manual_seed(0)
    e, d, inter, k = 8, 24, 40, 6
    w1, w3 = torch.randn(e, inter, d, generator=g) * d**-0.5, torch.randn(e, inter, d, generator=g) * d**-0.5
    w2 = torch.randn(e, d, inter, generator=g) * inter**-0.5
    x = torch.randn(5, d, generator=g) * 4  # large enough that the swiglu clamp engages
    weights, idx = ref.route(ref.scores_from_logits(torch.randn(5, e, generator=g), "sqrtsoftplus"), k, 1.5)
    grouped = ref.experts_forward(x, weights, idx, w1, w2, w3, 10.0)  # 5 * 6 pairs > 8: grouped
    for t in range(5):
        single = ref.experts_forward(x[t : t + 1], weights[t : t + 1], idx[t : t + 1], w1, w2, w3, 10.0)
        assert_close(f"token {t}", grouped[t : t + 1], single, atol=1e-5, rtol=1e-5)
    naive = torch.stack([
        sum(weights[t, j] * (w2[ex] @ ref.swiglu(w1[ex] @ x[t], w3[ex] @ x[t], 10.0))
            for j, ex in enumerate(idx[t].tolist()))
        for t in range(5)
    ])  # fmt: skip
    assert_close("naive", naive, grouped, atol=1e-5, rtol=1e-5)


def test_bf16_experts_multiply_in_bf16_and_sum_in_fp32():
    """bf16 expert weights beside fp32 activations (a CPU that multiplies bf16): each product in
    bf16, the SwiGLU and the sums over a token's experts in fp32, for both paths."""
    g = torch.Generator().manual_seed(1)
    e, d, inter, k = 8, 64, 96, 4
    w1, w3 = ((torch.randn(e, inter, d, generator=g) * d**-0.5).bfloat16() for _ in range(2))
    w2 = (torch.randn(e, d, inter, generator=g) * inter**-0.5).bfloat16()
    x = torch.randn(6, d, generator=g)
    weights, idx = ref.route(ref.scores_from_logits(torch.randn(6, e, generator=g), "sqrtsoftplus"), k, 1.5)
    exact = ref.experts_forward(x, weights, idx, w1.float(), w2.float(), w3.float(), 10.0)
    for n in (6, 1):  # grouped products, and one token's per-expert views
        got = ref.experts_forward(x[:n], weights[:n], idx[:n], w1, w2, w3, 10.0)
        assert got.dtype == torch.float32
        assert_close(f"{n} tokens", got, exact[:n], atol=3e-2, rtol=3e-2)  # bf16-rounded product inputs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_inference_pads_the_experts_into_one_product_with_the_loops_results(dtype, monkeypatch):
    """Without autograd, many tokens go through one batched product per projection (tokens padded
    to the busiest expert): bf16 products bit for bit the loop's (with autograd); skewed routing,
    which would pad too much, takes the loop."""
    g = torch.Generator().manual_seed(2)
    e, d, inter, k, n = 16, 64, 96, 2, 128
    w1, w3 = ((torch.randn(e, inter, d, generator=g) * d**-0.5).to(dtype) for _ in range(2))
    w2 = (torch.randn(e, d, inter, generator=g) * inter**-0.5).to(dtype)
    x = torch.randn(n, d, generator=g) * 4
    weights, idx = ref.route(ref.scores_from_logits(torch.randn(n, e, generator=g), "sqrtsoftplus"), k, 1.5)
    loop = ref.experts_forward(x, weights, idx, w1, w2, w3, 10.0)  # autograd on: the loop
    padded = []
    monkeypatch.setattr(ref, "_experts_padded", lambda *a: padded.append(1) or _PADDED(*a))
    with torch.no_grad():
        got = ref.experts_forward(x, weights, idx, w1, w2, w3, 10.0)
        skewed = torch.zeros_like(idx)
        skewed[:, 1] = torch.arange(n) % (e - 1) + 1  # every token on expert 0: 16 * 128 rows for 256 pairs
        ref.experts_forward(x, weights, skewed, w1, w2, w3, 10.0)
    assert padded == [1]
    if dtype is torch.bfloat16:
        assert torch.equal(got, loop)
    else:
        assert_close("padded", got, loop, atol=1e-5, rtol=1e-5)


_PADDED = ref._experts_padded

CASES = [
    pytest.param(63, 24, 6, "sqrtsoftplus", True, id="N63-E24-K6-sqrtsoftplus-bias"),
    pytest.param(111, 100, 6, "sqrtsoftplus", True, id="N111-E100-K6-sqrtsoftplus-bias"),
    pytest.param(63, 24, 8, "sqrtsoftplus", False, id="N63-E24-K8-nobias"),
    pytest.param(17, 24, 1, "sigmoid", True, id="N17-K1-sigmoid"),
    pytest.param(17, 33, 5, "softmax", True, id="N17-E33-K5-softmax"),
    pytest.param(7, 6, 6, "sqrtsoftplus", True, id="N7-K=E"),
]


@pytest.mark.parametrize("n, e, k, score_func, with_bias", CASES)
def test_triton_route_matches_ref(triton_op, n, e, k, score_func, with_bias):
    tri = triton_op("moe")
    g = torch.Generator().manual_seed(n + e)
    logits = torch.randn(n, e, generator=g) * 3
    logits[0, :3] = torch.tensor([-40.0, 25.0, -18.0])  # softplus far tail, threshold branch
    bias = 0.1 * torch.randn(e, generator=g) if with_bias else None
    scores = ref.scores_from_logits(logits, score_func)
    expected_w, expected_idx = by_expert(*ref.route(scores, k, 1.5, bias))
    weights, idx = tri.route_from_logits(logits, k, 1.5, score_func, bias)
    assert idx.dtype == torch.int64 and weights.dtype == torch.float32
    biased = scores + (bias if bias is not None else 0)
    assert (biased.gather(1, idx).diff(dim=-1) <= 0).all()  # highest biased score first
    got_w, got_idx = by_expert(weights, idx)
    assert torch.equal(got_idx, expected_idx)
    assert_close("weights", expected_w, got_w, atol=1e-6, rtol=1e-6)
    # and from precomputed scores, as `ref.route` takes them
    weights, idx = tri.route(scores, k, 1.5, bias)
    assert torch.equal(by_expert(weights, idx)[1], expected_idx)


def test_triton_scores_keep_the_softplus_tail(triton_op):
    """k = E makes each weight score / sum(scores): tiny scores (logit -40 -> sqrt(4e-18)) survive."""
    tri = triton_op("moe")
    logits = torch.tensor([[-40.0, -18.0, 0.0, 25.0, 19.9, 20.1, -1e-3, 3.0]])
    expected_w, _ = by_expert(*ref.route(ref.scores_from_logits(logits, "sqrtsoftplus"), 8, 1.0))
    got_w, _ = by_expert(*tri.route_from_logits(logits, 8, 1.0))
    assert_close("weights", expected_w, got_w, atol=0, rtol=1e-5)


def test_triton_fixed_experts(triton_op):
    tri = triton_op("moe")
    g = torch.Generator().manual_seed(4)
    scores = ref.scores_from_logits(torch.randn(63, 24, generator=g), "sqrtsoftplus")
    fixed = torch.randint(0, 24, (63, 6), generator=g)
    expected_w, expected_idx = ref.route(scores, 6, 2.5, fixed_idx=fixed)
    weights, idx = tri.route(scores, 6, 2.5, fixed_idx=fixed.to(torch.int32))
    assert torch.equal(idx, expected_idx)  # given experts keep their order
    assert_close("weights", expected_w, weights, atol=1e-6, rtol=1e-6)


def test_triton_rejects_bad_inputs(triton_op):
    tri = triton_op("moe")
    scores = torch.rand(4, 8)
    with pytest.raises(ValueError, match=r"k must be in \[1, 8\] \(number of experts\), got 9"):
        tri.route(scores, 9, 1.0)
    with pytest.raises(ValueError, match="bias has 7 entries for 8 experts"):
        tri.route(scores, 2, 1.0, torch.zeros(7))
    with pytest.raises(ValueError, match="score_func must be one of"):
        tri.route_from_logits(scores, 2, 1.0, "relu")


def test_dispatch_on_cpu_is_the_ref():
    scores = torch.rand(5, 16, generator=torch.Generator().manual_seed(5))
    bias = torch.zeros(16)
    for a, b in zip(moe.route(scores, 6, 1.5, bias), ref.route(scores, 6, 1.5, bias), strict=True):
        assert torch.equal(a, b)
