"""mHC: the C Sinkhorn (forward and backward) and the Triton kernels (CPU interpreter) against ref.py."""

from __future__ import annotations

import pytest
import torch
from kernel_checks import assert_close

from deepfim.kernels import mhc
from deepfim.kernels.mhc import cpu, ref

ITERS, EPS, NORM_EPS = 20, 1e-6, 1e-6

needs_c = pytest.mark.skipif(not cpu.available(), reason="no C compiler: cpu.sinkhorn falls back to the ref")


def mix_params(n: int, d: int, m: int, n_scale: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    fn = torch.randn(m, n * d, generator=g) * (n * d) ** -0.5
    return fn, torch.randn(m, generator=g), 0.5 + torch.rand(n_scale, generator=g)


@needs_c
@pytest.mark.parametrize("n, iters", [(4, 20), (3, 20), (8, 7), (1, 20), (4, 1)], ids=lambda v: str(v))
def test_c_sinkhorn_forward(n, iters):
    logits = torch.randn(111, n, n, generator=torch.Generator().manual_seed(n)) * 3
    assert_close("sinkhorn", ref.sinkhorn(logits, iters, EPS), cpu.sinkhorn(logits, iters, EPS), atol=1e-6, rtol=1e-5)


@needs_c
@pytest.mark.parametrize("t, n, d", [(1, 4, 256), (5, 4, 20), (8, 3, 64), (2, 8, 33)], ids=str)
def test_c_fused_hc_pre_matches_ref(t, n, d):
    x = torch.randn(2, t, n, d, generator=torch.Generator().manual_seed(t))
    fn, base, scale = mix_params(n, d, (2 + n) * n, 3, seed=t)
    with torch.inference_mode():
        got = cpu.hc_pre(x, fn, base, scale, ITERS, EPS, NORM_EPS)
    want = ref.hc_pre(x, fn, base, scale, ITERS, EPS, NORM_EPS)
    for name, a, b in zip(("u", "post", "comb"), want, got, strict=True):
        assert_close(name, a, b, atol=2e-6, rtol=1e-5)


@needs_c
def test_many_tokens_or_autograd_take_the_reference_with_the_c_sinkhorn():
    fn, base, scale = mix_params(4, 16, 24, 3)
    many = torch.randn(1, cpu.FUSED_HC_PRE_MAX_TOKENS + 1, 4, 16)
    with torch.inference_mode():
        got = cpu.hc_pre(many, fn, base, scale, ITERS, EPS, NORM_EPS)
        want = ref.hc_pre(many, fn, base, scale, ITERS, EPS, NORM_EPS, cpu.sinkhorn)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    x = torch.randn(1, 1, 4, 16, requires_grad=True)
    u, _, _ = cpu.hc_pre(x, fn, base, scale, ITERS, EPS, NORM_EPS)
    (grad,) = torch.autograd.grad(u.sum(), x)  # training on one token still gets gradients
    assert grad.abs().sum() > 0


@needs_c
@pytest.mark.parametrize("n, iters", [(4, 20), (3, 5), (8, 20)], ids=lambda v: str(v))
def test_c_sinkhorn_backward_matches_ref_autograd(n, iters):
    g = torch.Generator().manual_seed(10 + n)
    logits = (torch.randn(2, 7, n, n, generator=g) * 2).requires_grad_()
    upstream = torch.randn(2, 7, n, n, generator=g)
    (grad_c,) = torch.autograd.grad((cpu.sinkhorn(logits, iters, EPS) * upstream).sum(), logits)
    (grad_ref,) = torch.autograd.grad((ref.sinkhorn(logits, iters, EPS) * upstream).sum(), logits)
    assert_close("grad", grad_ref, grad_c, atol=1e-5, rtol=1e-4)


def test_cpu_sinkhorn_falls_back_beyond_the_c_kernel_limits():
    """Bug fix: with iters > 64 the C backward ran out of state slots and raised RuntimeError
    ("sinkhorn_bwd failed"), and iters = 0 failed in the C forward; both now use the ref."""
    logits = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(2)).requires_grad_()
    for iters in (65, 0):
        (grad,) = torch.autograd.grad(cpu.sinkhorn(logits, iters, EPS).square().sum(), logits)
        (grad_ref,) = torch.autograd.grad(ref.sinkhorn(logits, iters, EPS).square().sum(), logits)
        assert torch.equal(grad, grad_ref)


def test_ref_sinkhorn_gradient_is_right():
    """The oracle for the C backward is itself checked by finite differences (float64)."""
    logits = torch.randn(3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ref.sinkhorn(x, 5, EPS), (logits,))


def test_ref_sinkhorn_is_doubly_stochastic():
    m = ref.sinkhorn(torch.randn(63, 4, 4, generator=torch.Generator().manual_seed(1)), ITERS, EPS)
    assert (m >= 0).all()
    assert_close("column sums", torch.ones(63, 4), m.sum(-2), atol=1e-5, rtol=0)
    assert_close("row sums", torch.ones(63, 4), m.sum(-1), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "count, n, block_t",
    [(63, 4, 32), (63, 3, 32), (111, 8, 32), (63, 1, 32), (17, 4, 1), (17, 5, 1)],
    ids=["T63-n4", "T63-n3", "T111-n8", "T63-n1", "per-token-n4", "per-token-n5"],
)
def test_triton_sinkhorn(triton_op, count, n, block_t):
    tri = triton_op("mhc")
    logits = torch.randn(count, n, n, generator=torch.Generator().manual_seed(n)) * 3
    assert_close("sinkhorn", ref.sinkhorn(logits, ITERS, EPS), tri.sinkhorn(logits, ITERS, EPS, block_t=block_t))


@pytest.mark.parametrize(
    "b, t, n, d, dtype",
    [
        (1, 63, 4, 40, torch.float32),
        (2, 5, 3, 24, torch.float32),
        (1, 9, 8, 16, torch.float32),
        (1, 63, 4, 40, torch.bfloat16),
    ],  # fmt: skip
    ids=["T63-n4-D40", "B2-T5-n3-D24", "T9-n8-D16", "T63-n4-D40-bf16"],
)
def test_triton_hc_pre_post_head(triton_op, b, t, n, d, dtype):
    tri = triton_op("mhc")
    g = torch.Generator().manual_seed(t)
    x = torch.randn(b, t, n, d, generator=g).to(dtype)
    fn, base, scale = mix_params(n, d, (2 + n) * n, 3)
    u_ref, post_ref, comb_ref = ref.hc_pre(x.float(), fn, base, scale, ITERS, EPS, NORM_EPS)
    u, post, comb = tri.hc_pre(x, fn, base, scale, ITERS, EPS, NORM_EPS)
    assert u.dtype == post.dtype == comb.dtype == torch.float32
    assert_close("u", u_ref, u)
    assert_close("post", post_ref, post)
    assert_close("comb", comb_ref, comb)

    f = torch.randn(b, t, d, generator=g).to(dtype)
    expected = ref.hc_post(f.float(), x.float(), post_ref, comb_ref)
    assert_close("hc_post", expected, tri.hc_post(f, x, post_ref, comb_ref))

    fn_h, base_h, scale_h = mix_params(n, d, n, 1, seed=1)
    head_ref = ref.hc_head(x.float(), fn_h, base_h, scale_h, EPS, NORM_EPS)
    assert_close("hc_head", head_ref, tri.hc_head(x, fn_h, base_h, scale_h, EPS, NORM_EPS))


def test_hc_post_mixes_along_the_transpose():
    """X'_j = post_j f + sum_i comb[i, j] X_i: row i of comb is the source stream."""
    x = torch.zeros(1, 1, 2, 1)
    x[0, 0, 0, 0] = 1.0  # only stream 0 carries a value
    comb = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])  # comb[0, 1] = 1: stream 0 -> stream 1
    out = ref.hc_post(torch.zeros(1, 1, 1), x, torch.zeros(1, 1, 2), comb)
    assert out.flatten().tolist() == [0.0, 1.0]


def test_triton_rejects_bad_inputs(triton_op):
    tri = triton_op("mhc")
    x = torch.randn(1, 3, 4, 8)
    fn, base, scale = mix_params(4, 8, 24, 3)
    with pytest.raises(ValueError, match=r"fn shape \(24, 16\) does not match"):
        tri.hc_pre(x, fn[:, :16].contiguous(), base, scale, ITERS, EPS, NORM_EPS)
    with pytest.raises(ValueError, match="support 1..8 streams, got n=9"):
        tri.sinkhorn(torch.randn(2, 9, 9), ITERS, EPS)
    with pytest.raises(ValueError, match="x must be contiguous"):
        tri.hc_post(torch.randn(1, 3, 8), torch.randn(1, 3, 8, 4).transpose(-1, -2), torch.rand(1, 3, 4),
                    torch.rand(1, 3, 4, 4))  # fmt: skip


def test_dispatch_on_cpu_is_the_c_path():
    x = torch.randn(1, 5, 4, 8)
    fn, base, scale = mix_params(4, 8, 24, 3)
    for a, b in zip(mhc.hc_pre(x, fn, base, scale, ITERS, EPS, NORM_EPS),
                    cpu.hc_pre(x, fn, base, scale, ITERS, EPS, NORM_EPS), strict=True):  # fmt: skip
        assert torch.equal(a, b)
    logits = torch.randn(5, 4, 4)
    assert torch.equal(mhc.sinkhorn(logits, ITERS, EPS), cpu.sinkhorn(logits, ITERS, EPS))
