"""FP8 e4m3 / FP4 e2m1 formats: ref.py against hand-computed values from the format definitions,
and the Triton kernels (CPU interpreter) bit for bit against ref.py."""

from __future__ import annotations

import pytest
import torch

from deepfim.kernels import quant
from deepfim.kernels.quant import ref

# e2m1 codes 0..15: magnitude table [0, .5, 1, 1.5, 2, 3, 4, 6], bit 3 = sign
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def e8m0_bytes(scale: torch.Tensor) -> list[int]:
    return scale.view(torch.uint8).flatten().tolist()


def test_unpack_fp4_code_table_low_nibble_first():
    packed = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.int8).view(1, 256)
    expected = [v for byte in range(256) for v in (E2M1[byte & 0xF], E2M1[byte >> 4])]
    values = ref.unpack_fp4(packed).flatten().tolist()
    assert values == expected
    assert ref.unpack_fp4(torch.tensor([[0x21]], dtype=torch.uint8)).tolist() == [[0.5, 1.0]]


def test_fp4_round_ties_to_even_and_saturates():
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.75, -2.5, -5.0])
    assert ref.fp4_round(x).tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -1.0, -2.0, -4.0]
    eps = 1e-6
    x = torch.tensor([0.25 + eps, 0.75 - eps, 1.25 + eps, 1.75 - eps, 2.5 + eps, 3.5 - eps, 5.0 + eps, 7.0, 1e9, -7.0])
    assert ref.fp4_round(x).tolist() == [0.5, 0.5, 1.5, 1.5, 3.0, 3.0, 6.0, 6.0, 6.0, -6.0]


def test_fp4_round_trip_power_of_two_block_scales():
    x = torch.zeros(3, 32)
    x[0, :4] = torch.tensor([6.0, 2.9, 0.75, -5.1])  # amax 6 -> scale 1
    x[1, :3] = torch.tensor([3.0, 0.375, -1.1])  # amax 3 -> 3/6 = 0.5 -> scale 0.5
    x[2, :2] = torch.tensor([1e-6, -1e-6])  # amax floored at 1e-4 -> scale 2^-15: both round to 0
    y = ref.fp4_round_trip(x)
    assert y[0, :4].tolist() == [6.0, 3.0, 1.0, -6.0]
    assert y[1, :3].tolist() == [3.0, 0.5, -1.0]
    assert y[2].abs().max().item() == 0.0


def test_fp8_block_scales_are_ue8m0():
    w = torch.zeros(128, 512)
    w[0, 0], w[5, 200], w[7, 300] = 448.0, -449.0, 0.875  # blocks along K: 0..3
    q, scale = ref.quantize_fp8_blocks(w)
    assert scale.dtype == torch.float8_e8m0fnu and scale.shape == (1, 4)
    # 448 -> 2^0; 449 -> 2^1; 0.875 = 448 * 2^-9 -> 2^-9; 0 -> 1e-4/448 -> 2^ceil(-22.09) = 2^-22
    assert e8m0_bytes(scale) == [127, 128, 118, 105]
    assert q.float()[5, 200].item() == -224.0  # 449 / 2 rounds to the e4m3 value 224
    assert torch.equal(ref.dequant_fp8_blocks(q, scale)[0, 0], torch.tensor(448.0))


def test_fp8_round_trip_e4m3_ties_to_even():
    x = torch.zeros(1, 16)
    vals = [448.0, 1.0625, 1.1875, 17.0, 19.0, 2.0**-9, 2.0**-10, 3 * 2.0**-10, -1.0625, 0.1]
    x[0, : len(vals)] = torch.tensor(vals)
    y = ref.fp8_round_trip(x, block=16)[0, : len(vals)].tolist()
    # spacing 1/8 in [1, 2), 2 in [16, 32), 2^-9 below 2^-6 (subnormals); 0.1 -> 13 * 2^-7
    assert y == [448.0, 1.0, 1.25, 16.0, 20.0, 2.0**-9, 0.0, 2.0**-8, -1.0, 0.1015625]


def test_fp4_pack_then_dequant_is_the_round_trip():
    w = torch.randn(9, 64, generator=torch.Generator().manual_seed(0)) * 3
    packed, scale = ref.quantize_fp4_packed(w)
    assert packed.dtype == torch.int8 and packed.shape == (9, 32) and scale.shape == (9, 2)
    assert torch.equal(ref.dequant_fp4_packed(packed, scale), ref.fp4_round_trip(w))
    row = torch.zeros(1, 32)
    row[0, :4] = torch.tensor([0.5, 1.0, -6.0, 0.0])
    packed, scale = ref.quantize_fp4_packed(row)
    assert packed.view(torch.uint8)[0, :2].tolist() == [0x21, 0x0F] and e8m0_bytes(scale) == [127]


def test_fp8_dequant_partial_blocks():
    w = torch.randn(200, 300, generator=torch.Generator().manual_seed(1)) * 5
    q, scale = ref.quantize_fp8_blocks(w)
    assert scale.shape == (2, 3)
    # element (i, j) uses the scale of block (i // 128, j // 128); the last blocks are partial
    expected = q.float() * scale.float()[torch.arange(200) // 128][:, torch.arange(300) // 128]
    assert torch.equal(ref.dequant_fp8_blocks(q, scale), expected)
    assert (ref.dequant_fp8_blocks(q, scale) - w).abs().max() <= w.abs().max() / 8


def test_hadamard_is_orthogonal():
    h = ref.hadamard(128)
    assert torch.allclose(h @ h.t(), torch.eye(128), atol=1e-6)
    with pytest.raises(ValueError, match="power of two, got 96"):
        ref.hadamard(96)


# ---- Triton kernels, bitwise against ref.py ----


def wide_range(rows, k, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, k, generator=g) * torch.logspace(-4, 4, k)[torch.randperm(k, generator=g)]).to(dtype)


@pytest.mark.parametrize("fmt", ["fp8", "fp4"])
@pytest.mark.parametrize(
    "rows, k, block, dtype",
    [
        (63, 192, 64, torch.float32),
        (111, 96, 32, torch.float32),
        (5, 240, 48, torch.float32),
        (3, 128, 128, torch.float32),
        (63, 192, 64, torch.bfloat16),
    ],  # fmt: skip
    ids=["R63-B64", "R111-B32", "R5-B48", "R3-B128", "R63-B64-bf16"],
)
def test_triton_round_trips_bitwise(triton_op, fmt, rows, k, block, dtype):
    tri = triton_op("quant")
    x = wide_range(rows, k, dtype=dtype)
    name = f"{fmt}_round_trip"
    got = getattr(tri, name)(x, block)
    assert got.dtype == dtype
    assert torch.equal(got, getattr(ref, name)(x, block))


def test_triton_round_trips_on_hand_values(triton_op):
    """The tie and saturation cases above, through the kernels (3-D input: leading dims flatten)."""
    tri = triton_op("quant")
    x = torch.zeros(2, 1, 16)
    x[0, 0, :10] = torch.tensor([448.0, 1.0625, 1.1875, 17.0, 19.0, 2.0**-9, 2.0**-10, 3 * 2.0**-10, -1.0625, 0.1])
    x[1, 0, :8] = torch.tensor([6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    assert torch.equal(tri.fp8_round_trip(x, 16), ref.fp8_round_trip(x, 16))
    assert torch.equal(tri.fp4_round_trip(x, 16), ref.fp4_round_trip(x, 16))
    scale_edge = torch.zeros(1, 32)
    scale_edge[0, 0] = 448.0 * 2.0**-5  # amax exactly on a power-of-two boundary
    assert torch.equal(tri.fp8_round_trip(scale_edge, 32), ref.fp8_round_trip(scale_edge, 32))


def test_triton_takes_the_exact_scale_ceiling(triton_op):
    """amax / 448 one ulp above 32: the exact ceil(log2) is 6 (scale 64), where torch's fp32 log2
    returns 5.0 (see README). With scale 64, 0.0625 / 64 = 2^-10 is a tie between 0 and the
    smallest subnormal 2^-9, and goes to the even 0."""
    tri = triton_op("quant")
    x = torch.zeros(1, 32)
    x[0, 0] = torch.nextafter(torch.tensor(448.0 * 32), torch.tensor(1e30))
    x[0, 1] = 0.0625
    assert tri.fp8_round_trip(x, 32)[0, :2].tolist() == [448.0 * 32, 0.0]


@pytest.mark.parametrize("m, k, block", [(45, 192, 32), (1, 64, 64), (17, 40, 8)], ids=["M45-K192", "M1-K64", "M17-B8"])
def test_triton_fp4_pack_and_dequant_bitwise(triton_op, m, k, block):
    tri = triton_op("quant")
    w = wide_range(m, k, seed=2)
    packed, scale = tri.quantize_fp4_packed(w, block)
    ref_packed, ref_scale = ref.quantize_fp4_packed(w, block)
    assert torch.equal(packed, ref_packed)
    assert e8m0_bytes(scale) == e8m0_bytes(ref_scale)
    for s in (ref_scale, ref_scale.view(torch.uint8), ref_scale.float()):
        assert torch.equal(tri.dequant_fp4_packed(ref_packed, s, block), ref.dequant_fp4_packed(ref_packed, s, block))


@pytest.mark.filterwarnings("ignore:.*encountered in multiply:RuntimeWarning")  # inf/NaN scales, on purpose
def test_triton_fp8_dequant_bitwise(triton_op):
    tri = triton_op("quant")
    w = wide_range(200, 300, seed=3)
    q, scale = ref.quantize_fp8_blocks(w)
    for s in (scale, scale.view(torch.uint8), scale.float()):
        assert torch.equal(tri.dequant_fp8_blocks(q, s), ref.dequant_fp8_blocks(q, s))
    # every e4m3 code (0x7F and 0xFF are NaN) under the extreme scale bytes 0 (2^-127) and 255
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).view(16, 16)
    for byte in (0, 1, 127, 254, 255):
        s = torch.full((1, 1), byte, dtype=torch.uint8)
        for scale_arg in (s, s.view(torch.float8_e8m0fnu)):
            got = tri.dequant_fp8_blocks(codes, scale_arg, block=16)
            expected = ref.dequant_fp8_blocks(codes, scale_arg, block=16)
            assert torch.equal(got.isnan(), expected.isnan()), (byte, scale_arg.dtype)
            assert torch.equal(got.nan_to_num(0.0), expected.nan_to_num(0.0)), (byte, scale_arg.dtype)


def test_triton_rejects_bad_inputs(triton_op):
    tri = triton_op("quant")
    with pytest.raises(ValueError, match=r"multiple of block=128, got shape \(4, 96\)"):
        tri.fp8_round_trip(torch.randn(4, 96))
    q, scale = ref.quantize_fp8_blocks(torch.randn(130, 128))
    with pytest.raises(ValueError, match=r"FP8 scale shape \(1, 1\) does not match weight \(130, 128\)"):
        tri.dequant_fp8_blocks(q, scale[:1])
    with pytest.raises(ValueError, match="weight dtype torch.float32 not supported"):
        tri.dequant_fp8_blocks(q.float(), scale)


def test_dispatch_on_cpu_is_the_ref():
    x = wide_range(3, 128)
    assert torch.equal(quant.fp8_round_trip(x), ref.fp8_round_trip(x))
    assert torch.equal(quant.fp4_round_trip(x), ref.fp4_round_trip(x))
    packed, scale = ref.quantize_fp4_packed(x)
    assert torch.equal(quant.dequant_fp4_packed(packed, scale), ref.dequant_fp4_packed(packed, scale))
