"""FP8 block-scaled GEMM: ref.py against a decoder written from the e4m3 / ue8m0 definitions, the
Triton kernel's in-GEMM dequantisation bit for bit against that decoder (identity activations),
and the kernel (CPU interpreter) against ref.py on odd sizes, partial 128 x 128 blocks, split K."""

from __future__ import annotations

import pytest
import torch
from format_spec import fp8_weight, ue8m0_values
from kernel_checks import assert_gemm_close

from deepfim.kernels import fp8_gemm
from deepfim.kernels.fp8_gemm import ref
from deepfim.kernels.quant.ref import quantize_fp8_blocks

NON_NAN_CODES = [b for b in range(256) if b & 0x7F != 0x7F]
# exponent bytes whose scaled e4m3 values stay finite in fp32 (448 * 2^119 < 2^128); 0 is 2^-127
SCALE_BYTES = [0, 1, 7, 64, 100, 120, 127, 128, 140, 200, 246]
# the interpreter's tl.dot_scaled passes bf16 operands through fp16 (on a GPU they stay bf16): where the
# scaled weight itself is the bf16 operand (float scales), its values must fit fp16's range
FP16_RANGE_SCALE_BYTES = [112, 120, 127, 128, 134]


@pytest.fixture(scope="module")
def tri(triton_op):
    triton_op("quant")  # the e4m3 / scale helpers the GEMM kernel calls, interpreted too
    return triton_op("fp8_gemm")


def every_code_weight(n: int, k: int, seed: int, scale_bytes=SCALE_BYTES) -> tuple[torch.Tensor, torch.Tensor]:
    """e4m3 [N, K] cycling through all 254 non-NaN codes (shuffled), ue8m0 bytes from scale_bytes."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.tensor(NON_NAN_CODES, dtype=torch.uint8)
    flat = codes.repeat(n * k // len(codes) + 1)[: n * k][torch.randperm(n * k, generator=g)]
    picks = torch.randint(0, len(scale_bytes), ((n + 127) // 128, (k + 127) // 128), generator=g)
    return flat.view(n, k).view(torch.float8_e4m3fn), torch.tensor(scale_bytes, dtype=torch.uint8)[picks]


def as_kind(scale_bytes: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "e8m0":
        return scale_bytes.view(torch.float8_e8m0fnu)
    if kind == "uint8":
        return scale_bytes
    return ue8m0_values(scale_bytes).float()


def test_ref_matches_the_format_definition():
    """ref.fp8_linear == x @ W^T with W decoded field by field (float64), over partial blocks."""
    w, s = every_code_weight(200, 300, seed=0)
    x = torch.randn(5, 300, generator=torch.Generator().manual_seed(1))
    expected = x.double() @ fp8_weight(w.view(torch.uint8), ue8m0_values(s), 128).t()
    got = ref.fp8_linear(x, w, s.view(torch.float8_e8m0fnu), out_dtype=torch.float32)
    assert_gemm_close("ref vs spec", expected.float(), got)


@pytest.mark.parametrize(
    "x_dtype, kind",
    [(x, kind) for x in (torch.float32, torch.bfloat16) for kind in ("e8m0", "uint8", "float")],
    ids=lambda v: {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(v, v),
)
def test_triton_dequantises_bit_exactly(tri, x_dtype, kind):
    """Identity activations read the dequantised weight back: out = I @ W^T = W^T, every element equal
    to the spec decoder (e4m3 fields x 2^(e - 127)), including subnormal codes and the scale 2^-127.
    bf16 with float scales rounds the scaled weight to bf16 (see triton.py), so it equals the
    decoded value rounded to bf16."""
    n, k = 181, 300  # 2 x 3 scale blocks, both partial
    scaled_operand = x_dtype == torch.bfloat16 and kind == "float"
    w, s = every_code_weight(n, k, seed=2, scale_bytes=FP16_RANGE_SCALE_BYTES if scaled_operand else SCALE_BYTES)
    spec = fp8_weight(w.view(torch.uint8), ue8m0_values(s), 128).float()
    if scaled_operand:
        spec = spec.bfloat16().float()
    eye = torch.eye(k, dtype=x_dtype)
    got = tri.fp8_linear(eye, w, as_kind(s, kind), out_dtype=torch.float32)
    assert torch.equal(got, spec.t()), (got - spec.t()).abs().max()


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_triton_nan_codes_are_nan(tri, x_dtype):
    """0x7F / 0xFF are NaN in e4m3fn (not 480, as a plain fp8 cast reads them on the interpreter): a
    NaN weight makes its whole output column NaN, the others stay exact."""
    w, s = every_code_weight(64, 128, seed=3)
    raw = w.view(torch.uint8).clone()
    raw[3, 17], raw[40, 100] = 0x7F, 0xFF
    x = torch.eye(128, dtype=x_dtype)
    got = tri.fp8_linear(x, raw.view(torch.float8_e4m3fn), s, out_dtype=torch.float32)
    assert got[:, [3, 40]].isnan().all() and not got[:, [0, 1, 2, 4, 39, 41]].isnan().any()
    expected = ref.fp8_linear(x.float(), raw.view(torch.float8_e4m3fn), s, out_dtype=torch.float32)
    assert torch.equal(got.nan_to_num(7.0), expected.nan_to_num(7.0))


FMA_TILES = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}  # what a GPU runs for fp32 (see triton.py)
CASES = [
    pytest.param((63,), 1823, 781, torch.float32, torch.float32, "e8m0", None, None, id="M63-fp32"),
    pytest.param((111,), 1823, 781, torch.bfloat16, torch.bfloat16, "e8m0", None, None, id="M111-bf16"),
    pytest.param((111,), 1823, 781, torch.bfloat16, torch.float32, "uint8", 3, None, id="M111-bf16-split3-uint8"),
    pytest.param((1,), 1823, 781, torch.bfloat16, torch.bfloat16, "float", None, None, id="M1-decode-float-scales"),
    pytest.param((3, 21), 300, 781, torch.bfloat16, torch.bfloat16, "e8m0", 4, None, id="3D-x-split4"),
    pytest.param((17,), 200, 300, torch.float32, torch.float32, "e8m0", 2, FMA_TILES, id="fp32-gpu-fma-tiles"),
]


@pytest.mark.parametrize("lead, n, k, x_dtype, out_dtype, kind, split_k, config", CASES)
def test_triton_matches_ref(tri, lead, n, k, x_dtype, out_dtype, kind, split_k, config):
    g = torch.Generator().manual_seed(n + k + len(lead))
    w, s = quantize_fp8_blocks(torch.randn(n, k, generator=g) * 0.05)
    s = as_kind(s.view(torch.uint8), kind)
    x = torch.randn(*lead, k, generator=g).to(x_dtype)
    got = tri.fp8_linear(x, w, s, out_dtype=out_dtype, split_k=split_k, config=config)
    assert got.dtype == out_dtype and got.shape == (*lead, n)
    assert_gemm_close(f"fp8_linear {lead}x{n}x{k}", ref.fp8_linear(x, w, s, out_dtype=torch.float32), got)


def test_triton_rejects_bad_inputs(tri):
    w, s = quantize_fp8_blocks(torch.randn(200, 300))
    x = torch.randn(4, 300)
    with pytest.raises(ValueError, match=r"weight dtype torch.float32 not supported"):
        tri.fp8_linear(x, w.float(), s)
    with pytest.raises(ValueError, match=r"FP8 scale shape \(2, 2\) does not match weight \(200, 300\)"):
        tri.fp8_linear(x, w, s[:, :2])
    with pytest.raises(ValueError, match=r"x shape \(4, 299\) does not match FP8 weight shape \(200, 300\)"):
        tri.fp8_linear(x[:, :299], w, s)
    with pytest.raises(ValueError, match=r"x dtype torch.float16 not supported"):
        tri.fp8_linear(x.half(), w, s)
    with pytest.raises(ValueError, match=r"block must be a positive multiple of 32, got 48"):
        tri.fp8_linear(x, w, s, block=48)


def test_dispatcher_on_cpu_is_the_reference():
    w, s = quantize_fp8_blocks(torch.randn(130, 260))
    x = torch.randn(2, 3, 260).bfloat16()
    assert torch.equal(fp8_gemm.fp8_linear(x, w, s), ref.fp8_linear(x, w, s))
    assert fp8_gemm.fp8_linear(x, w, s).dtype == torch.bfloat16
