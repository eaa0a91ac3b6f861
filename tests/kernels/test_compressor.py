"""Compressor window pooling: ref.pool_windows against a per-window loop, chunked calls against one
call, and the Triton kernel (CPU interpreter) against the ref."""

from __future__ import annotations

import pytest
import torch
from kernel_checks import assert_close

from deepfim.kernels import compressor
from deepfim.kernels.compressor import ref


def naive_pool(kv, gate, prev_kv, prev_gate, overlap):
    """One window at a time, straight from the definition (CSA: A-halves of window k-1 + B-halves of k)."""
    b, w, m, c = kv.shape
    d = c // 2 if overlap else c
    out = torch.zeros(b, w, d)
    for bi in range(b):
        for k in range(w):
            if not overlap:
                vals, scores = kv[bi, k], gate[bi, k]
            else:
                vals, scores = kv[bi, k, :, d:], gate[bi, k, :, d:]
                if k > 0:
                    vals = torch.cat([kv[bi, k - 1, :, :d], vals])
                    scores = torch.cat([gate[bi, k - 1, :, :d], scores])
                elif prev_kv is not None:
                    vals = torch.cat([prev_kv[bi], vals])
                    scores = torch.cat([prev_gate[bi], scores])
            for ch in range(d):
                weights = torch.softmax(scores[:, ch], 0)
                out[bi, k, ch] = (weights * vals[:, ch]).sum()
    return out


def make(b, w, m, c, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, w, m, c, generator=g).to(dtype), (2 * torch.randn(b, w, m, c, generator=g)).to(dtype)


@pytest.mark.parametrize("overlap, m, c", [(False, 5, 12), (True, 4, 16), (True, 3, 10)], ids=["hca", "csa", "csa-m3"])
@pytest.mark.parametrize("with_prev", [False, True], ids=["first", "carried"])
def test_ref_matches_naive_loop(overlap, m, c, with_prev):
    kv, gate = make(2, 3, m, c)
    d = c // 2 if overlap else c
    prev = [torch.randn(2, m, d), torch.randn(2, m, d)] if with_prev and overlap else [None, None]
    entries, _, _ = ref.pool_windows(kv, gate, *prev, overlap)
    assert_close("entries", naive_pool(kv, gate, *prev, overlap), entries, atol=1e-6, rtol=1e-6)


def test_ref_chunked_csa_equals_one_call():
    """Pooling windows 0..4 in one call equals 0..1 then 2..4 with the carried A-halves."""
    kv, gate = make(1, 5, 4, 16, seed=3)
    whole, last_kv, last_gate = ref.pool_windows(kv, gate, None, None, True)
    first, carry_kv, carry_gate = ref.pool_windows(kv[:, :2], gate[:, :2], None, None, True)
    rest, last_kv2, last_gate2 = ref.pool_windows(kv[:, 2:], gate[:, 2:], carry_kv, carry_gate, True)
    assert torch.equal(torch.cat([first, rest], 1), whole)
    assert torch.equal(last_kv2, last_kv) and torch.equal(last_gate2, last_gate)


CASES = [
    pytest.param(False, 2, 7, 5, 24, id="hca-B2-W7-m5-c24"),
    pytest.param(False, 1, 3, 128, 40, id="hca-W3-m128-c40"),
    pytest.param(True, 2, 7, 4, 48, id="csa-B2-W7-m4-d24"),
    pytest.param(True, 1, 5, 3, 22, id="csa-W5-m3-d11"),
    pytest.param(True, 1, 1, 4, 160, id="csa-W1-d80"),
]


@pytest.mark.parametrize("overlap, b, w, m, c", CASES)
@pytest.mark.parametrize("with_prev", [False, True], ids=["first", "carried"])
def test_triton_matches_ref(triton_op, overlap, b, w, m, c, with_prev):
    tri = triton_op("compressor")
    kv, gate = make(b, w, m, c, seed=w)
    d = c // 2 if overlap else c
    prev = [None, None]
    if with_prev:
        # carried A-halves arrive as strided views of the previous call's projections, as in the engine
        pkv, pgate = make(b, 1, m, c, seed=99)
        prev = [pkv[:, 0, :, :d], pgate[:, 0, :, :d]]
    expected = ref.pool_windows(kv, gate, *prev, overlap)
    got = tri.pool_windows(kv, gate, *prev, overlap)
    assert_close("entries", expected[0], got[0])
    if overlap:
        assert torch.equal(expected[1], got[1]) and torch.equal(expected[2], got[2])
    else:
        assert got[1] is None and got[2] is None


def test_triton_strided_windows_and_bf16(triton_op):
    """Windows sliced out of a longer chunk (non-contiguous batch stride), bf16 projections."""
    tri = triton_op("compressor")
    kv, gate = make(2, 6, 4, 32, seed=5, dtype=torch.bfloat16)
    kv, gate = kv[:, 1:5], gate[:, 1:5]
    assert not kv.is_contiguous()
    expected = ref.pool_windows(kv.float(), gate.float(), None, None, True)[0]
    got = tri.pool_windows(kv, gate, None, None, True)[0]
    assert got.dtype == torch.bfloat16
    assert_close("entries", expected, got)


def test_triton_rejects_bad_inputs(triton_op):
    tri = triton_op("compressor")
    kv, gate = make(1, 2, 4, 16)
    with pytest.raises(ValueError, match=r"gate shape \(1, 2, 4, 8\) differs from kv"):
        tri.pool_windows(kv, gate[..., :8], None, None, False)
    with pytest.raises(ValueError, match=r"prev_kv shape \(1, 4, 16\) does not match kv \(expected \(1, 4, 8\)\)"):
        tri.pool_windows(kv, gate, torch.randn(1, 4, 16), torch.randn(1, 4, 16), True)
    with pytest.raises(ValueError, match="even projection width"):
        tri.pool_windows(kv[..., :15], gate[..., :15], None, None, True)


def test_dispatch_on_cpu_is_the_ref():
    kv, gate = make(1, 3, 4, 16)
    for a, b in zip(compressor.pool_windows(kv, gate, None, None, True), ref.pool_windows(kv, gate, None, None, True),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
