"""Grouped MoE GEMM: the token permutation bitwise against a stable argsort, the FP4 dequantisation
inside the GEMM bit for bit against a decoder written from the e2m1 / ue8m0 definitions, and the
whole expert layer (CPU interpreter) against ref.py (= kernels/moe/ref.py math on dequantised
weights) for FP4 and dense experts, odd token counts and partial tiles."""

from __future__ import annotations

import math

import pytest
import torch
from format_spec import fp4_weight, ue8m0_values
from kernel_checks import assert_gemm_close

from deepfim.kernels import moe_gemm
from deepfim.kernels.moe import ref as moe_ref
from deepfim.kernels.moe_gemm import ref
from deepfim.kernels.moe_gemm.ref import ExpertWeights


@pytest.fixture(scope="module")
def tri(triton_op):
    triton_op("quant")  # the e2m1 / scale helpers the GEMM kernels call, interpreted too
    triton_op("moe_gemm.permute")
    return triton_op("moe_gemm")


def fp4_experts(e: int, inter: int, d: int, seed: int, scale_kind: str = "e8m0") -> ExpertWeights:
    """Random FP4 experts in the checkpoint layout: uniform e2m1 bytes (every code, rms 2.9) and ue8m0
    scales near fan_in^-1/2 / 2.9 (+-1 per 32-group), as e8m0, uint8 bytes or floats."""
    g = torch.Generator().manual_seed(seed)

    def stack(rows, cols):
        packed = torch.randint(0, 256, (e, rows, cols // 2), generator=g, dtype=torch.uint8).view(torch.int8)
        exponent = 127 + round(math.log2(cols**-0.5 / 2.9))
        scale = (exponent + torch.randint(-1, 2, (e, rows, cols // 32), generator=g)).to(torch.uint8)
        kinds = {"e8m0": scale.view(torch.float8_e8m0fnu), "uint8": scale, "float": ue8m0_values(scale).float()}
        return packed, kinds[scale_kind]

    (w1, s1), (w2, s2), (w3, s3) = stack(inter, d), stack(d, inter), stack(inter, d)
    return ExpertWeights(w1, w2, w3, s1, s2, s3)


def dense_experts(e: int, inter: int, d: int, seed: int, dtype: torch.dtype) -> ExpertWeights:
    g = torch.Generator().manual_seed(seed)
    w1, w3 = (torch.randn(e, inter, d, generator=g) * d**-0.5 for _ in range(2))
    return ExpertWeights(w1.to(dtype), (torch.randn(e, d, inter, generator=g) * inter**-0.5).to(dtype), w3.to(dtype))


def test_padded_layout_by_hand():
    # pairs: 0 -> expert 2, 1 -> 0, 2 -> 0, 3 -> 1; blocks of 2 rows
    rows, block_end = ref.padded_layout(torch.tensor([[2, 0], [0, 1]]), 3, 2)
    assert rows.tolist() == [1, 2, 3, -1, 0, -1] and block_end.tolist() == [1, 2, 3]
    rows, block_end = ref.padded_layout(torch.tensor([[3], [3], [0]]), 5, 4)  # empty experts take no rows
    assert rows.tolist() == [2, -1, -1, -1, 0, 1, -1, -1] and block_end.tolist() == [1, 1, 1, 2, 2]


PERMUTE_CASES = [
    pytest.param(63, 9, 6, 16, "uniform", id="N63-E9-K6-B16"),
    pytest.param(111, 33, 4, 64, "uniform", id="N111-E33-K4-B64"),
    pytest.param(1, 256, 6, 16, "uniform", id="decode-E256"),
    pytest.param(300, 256, 6, 32, "uniform", id="N300-E256-8-count-blocks"),
    pytest.param(333, 70, 3, 64, "skewed", id="N333-E70-skewed"),
    pytest.param(2741, 256, 6, 64, "uniform", id="N2741-65-count-blocks"),  # > BLOCK_B count rows in the plan
]


@pytest.mark.parametrize("n, e, k, block_m, dist", PERMUTE_CASES)
def test_triton_permutation_is_bitwise_the_stable_sort(tri, triton_op, n, e, k, block_m, dist):
    g = torch.Generator().manual_seed(n + e)
    if dist == "skewed":  # most pairs to expert 5, repeats within a token, many experts empty
        idx = torch.where(torch.rand(n, k, generator=g) < 0.8, 5, torch.randint(0, e, (n, k), generator=g))
    else:
        idx = torch.randint(0, e, (n, k), generator=g)
    layout = triton_op("moe_gemm.permute").permute(idx, e, block_m)
    rows, block_end = ref.padded_layout(idx, e, block_m)
    assert torch.equal(layout.block_end, block_end)
    assert layout.n_blocks >= int(block_end[-1]) and layout.rows.numel() == layout.n_blocks * block_m
    assert torch.equal(layout.rows[: rows.numel()], rows)
    order, _ = ref.permute_by_expert(idx, e)
    assert torch.equal(rows[rows >= 0].long(), order)  # the oracle itself: the stable argsort, padded


@pytest.mark.parametrize(
    "x_dtype, kind",
    [(x, kind) for x in (torch.float32, torch.bfloat16) for kind in ("e8m0", "uint8", "float")],
    ids=lambda v: {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(v, v),
)
def test_triton_fp4_dequantises_bit_exactly(tri, x_dtype, kind):
    """One-hot rows through the down GEMM read W2 back column by column: y[pair] = W2[e][:, j] for
    the pair (e, j), equal to the spec decoder (e2m1 fields x 2^(e - 127)) for all 256 byte values."""
    e, inter, d = 3, 160, 96  # I = 5 x 32: a partial K tile; D = 96: a partial N tile
    g = torch.Generator().manual_seed(4)
    packed = torch.arange(256, dtype=torch.int32).repeat(e * d * inter // 2 // 256 + 1)[: e * d * inter // 2]
    packed = packed[torch.randperm(packed.numel(), generator=g)].to(torch.uint8).view(e, d, inter // 2)
    # bf16 operands pass through fp16 in the interpreter's dot_scaled: keep 0.5 * 2^s .. 6 * 2^s within it
    lo, hi = (0, 250) if x_dtype == torch.float32 else (105, 140)
    scale_bytes = torch.randint(lo, hi, (e, d, inter // 32), generator=g).to(torch.uint8)
    scale_bytes.view(-1)[:4] = torch.tensor([lo, hi - 1, 127, 128], dtype=torch.uint8)
    scale = {"e8m0": scale_bytes.view(torch.float8_e8m0fnu), "uint8": scale_bytes,
             "float": ue8m0_values(scale_bytes).float()}[kind]  # fmt: skip
    dummy_w, dummy_s = torch.zeros(e, inter, d // 2, dtype=torch.uint8), scale_bytes.new_zeros(e, inter, d // 32)
    experts = ExpertWeights(dummy_w, packed, dummy_w, dummy_s.to(scale.dtype), scale, dummy_s.to(scale.dtype))
    idx = (torch.arange(e * inter) // inter).view(-1, 1)  # pair p = token p: expert p // I, column p % I
    cfg = tri._config(e * inter, e, x_dtype == torch.float32)
    layout = tri.permute.permute(idx, e, cfg["BLOCK_M"])
    h = torch.zeros(layout.n_blocks * cfg["BLOCK_M"], inter, dtype=x_dtype)
    valid = layout.rows >= 0
    pair = layout.rows[valid].long()
    h[valid.nonzero().squeeze(1), pair % inter] = 1.0
    y = tri.experts_down(h, layout, experts, cfg)
    spec = fp4_weight(packed.flatten(0, 1), ue8m0_values(scale_bytes).flatten(0, 1)).view(e, d, inter)
    assert torch.equal(y.float().view(e, inter, d).transpose(1, 2), spec.float().to(y.dtype).float())


FMA_TILES = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}  # what a GPU runs for fp32 (see triton.py)
EXPERT_CASES = [
    pytest.param(63, 9, 6, 224, 96, torch.bfloat16, "fp4-e8m0", 10.0, None, id="N63-bf16-fp4"),
    pytest.param(111, 9, 4, 224, 96, torch.float32, "fp4-uint8", 10.0, None, id="N111-fp32-fp4"),
    pytest.param(111, 17, 4, 160, 96, torch.bfloat16, "fp4-float", 0.0, None, id="N111-E17-float-scales-noclamp"),
    pytest.param(63, 9, 6, 224, 96, torch.bfloat16, "dense-bf16", 10.0, None, id="N63-dense-bf16"),
    pytest.param(33, 5, 2, 160, 96, torch.float32, "dense-fp32", 10.0, None, id="N33-dense-fp32"),
    pytest.param(1, 256, 6, 224, 96, torch.bfloat16, "fp4-e8m0", 10.0, None, id="decode-E256"),
    pytest.param(17, 7, 3, 96, 96, torch.float32, "fp4-e8m0", 10.0, FMA_TILES, id="fp32-gpu-fma-tiles"),
]


@pytest.mark.parametrize("n, e, k, d, inter, x_dtype, weights_kind, limit, config", EXPERT_CASES)
def test_triton_experts_match_ref(tri, n, e, k, d, inter, x_dtype, weights_kind, limit, config):
    if weights_kind.startswith("fp4"):
        experts = fp4_experts(e, inter, d, seed=n + e, scale_kind=weights_kind[4:])
    else:
        dtype = {"dense-bf16": torch.bfloat16, "dense-fp32": torch.float32}[weights_kind]
        experts = dense_experts(e, inter, d, seed=n + e, dtype=dtype)
    g = torch.Generator().manual_seed(n)
    x = (torch.randn(n, d, generator=g) * 4).to(x_dtype)  # large enough that the clamp engages
    weights, idx = moe_ref.route(moe_ref.scores_from_logits(torch.randn(n, e, generator=g), "sqrtsoftplus"), k, 1.5)
    expected = ref.experts_forward(x.float(), weights, idx, experts, limit)
    if limit > 0:  # the clamp matters for these inputs, so the kernel's clamp is really checked
        assert not torch.allclose(expected, ref.experts_forward(x.float(), weights, idx, experts, 0.0), atol=1e-3)
    got = tri.experts_forward(x, weights, idx, experts, limit, config=config)
    assert got.dtype == x_dtype and got.shape == (n, d)
    assert_gemm_close(f"experts {weights_kind} N={n} E={e} K={k}", expected, got)


def test_triton_rejects_bad_inputs(tri):
    experts = fp4_experts(4, 64, 96, seed=0)
    x, idx = torch.randn(3, 96), torch.tensor([[0, 1], [2, 3], [1, 2]])
    weights = torch.rand(3, 2)
    with pytest.raises(ValueError, match=r"expert ids must lie in \[0, 4\), got \[0, 4\]"):
        tri.experts_forward(x, weights, idx.clamp(max=4) + (idx == 3).long(), experts, 10.0)
    with pytest.raises(ValueError, match=r"x shape \(3, 64\) does not match experts with D=96"):
        tri.experts_forward(x[:, :64], weights, idx, experts, 10.0)
    with pytest.raises(ValueError, match=r"x dtype torch.float16 not supported"):
        tri.experts_forward(x.half(), weights, idx, experts, 10.0)
    with pytest.raises(ValueError, match=r"weights \(3, 1\) and idx \(3, 2\) must both be \[N, K\]"):
        tri.experts_forward(x, weights[:, :1], idx, experts, 10.0)
    with pytest.raises(ValueError, match=r"need all three scales"):
        tri.experts_forward(x, weights, idx, ExpertWeights(experts.w1, experts.w2, experts.w3, experts.s1), 10.0)
    with pytest.raises(ValueError, match=r"expert s2 shape \(4, 96, 1\) != \(4, 96, 2\)"):
        bad = ExpertWeights(experts.w1, experts.w2, experts.w3, experts.s1, experts.s2[..., :1], experts.s3)
        tri.experts_forward(x, weights, idx, bad, 10.0)


def test_ref_in_expert_chunks_is_the_same_sum():
    """With more used experts than expert_chunk the reference dequantises a chunk at a time."""
    experts = fp4_experts(9, 64, 96, seed=5)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(21, 96, generator=g)
    weights, idx = moe_ref.route(torch.rand(21, 9, generator=g), 3, 1.5)
    whole = ref.experts_forward(x, weights, idx, experts, 10.0)
    assert_gemm_close("chunked", whole, ref.experts_forward(x, weights, idx, experts, 10.0, expert_chunk=2))


def test_dispatcher_on_cpu_is_the_reference():
    experts = fp4_experts(5, 64, 96, seed=1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 96, generator=g).bfloat16()
    weights, idx = moe_ref.route(torch.rand(7, 5, generator=g), 2, 1.5)
    assert torch.equal(moe_gemm.experts_forward(x, weights, idx, experts, 10.0),
                       ref.experts_forward(x, weights, idx, experts, 10.0))  # fmt: skip
