"""GPU benchmark of the Triton kernels (`kernels/<op>/triton.py`) against their torch references.

For each case (V4-Flash dimensions: 64 heads, d = 512, window 128, top-k 512, hc 4, D = 4096,
E = 256, expert width 2048, FP8 projections from the config) it prints the median time of the
Triton kernel and of `ref.py` on the same GPU, the speed-up, the kernel's effective bandwidth
(bytes it must read and write / time), TFLOP/s where it multiplies, and for decode-shaped calls
the share of the GPU's HBM bandwidth, for prefill-shaped GEMMs the share of its dense bf16 peak
(`%peak`, from a table of data-sheet figures or --peak-gbs / --peak-tflops); and the max
|Triton - ref| so a GPU-only numerical problem shows up here. The references run in fp32 (their
design dtype); the kernels run bf16 unless the case says fp32.

`deepfim bench gpu` runs these cases (`timed_cases`) into its report; standalone::

    .venv/bin/python -m deepfim.bench.kernel_cases [--ops sparse_attn,...,fp8_gemm,moe_gemm] [--rep-ms 200]
    .venv/bin/python -m deepfim.bench.kernel_cases --smoke   # CPU: tiny shapes under TRITON_INTERPRET=1, no timing

Without CUDA (and without --smoke) it prints a message and exits 0.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

OPS = ("sparse_attn", "mhc", "compressor", "quant", "moe", "fp8_gemm", "moe_gemm")
# data-sheet peaks (HBM bytes/s, dense bf16 FLOP/s) by device-name substring, first match wins
PEAKS = (("H200", 4.8e12, 989e12), ("H100 PCIe", 2.0e12, 756e12), ("H100 NVL", 3.9e12, 835e12),
         ("H100", 3.35e12, 989e12), ("H20", 4.0e12, 148e12), ("B200", 8.0e12, 2250e12),
         ("A100-SXM4-40GB", 1.555e12, 312e12), ("A100", 2.0e12, 312e12), ("L40S", 0.864e12, 362e12))  # fmt: skip


@dataclass
class Case:
    op: str
    name: str
    triton: Callable[[], object]
    ref: Callable[[], object]
    bytes: int  # bytes the kernel must move (inputs read once + outputs written)
    flops: int = 0
    bound: str = ""  # "hbm": %peak of HBM bandwidth (decode shapes); "bf16": of dense bf16 FLOP/s


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def sparse_attn_cases(dev, small: bool) -> list[Case]:
    import torch

    from deepfim.kernels.sparse_attn import ref
    from deepfim.kernels.sparse_attn import triton as tri

    h, d, w, k = (16, 64, 16, 8) if small else (64, 512, 128, 512)
    cases = []
    for name, b, t, c, csa in (
        ("decode CSA 64K ctx", 1, 1, 64 if small else 16384, True),
        ("decode CSA B=8", 2 if small else 8, 1, 64 if small else 16384, True),
        ("decode HCA 1M ctx", 1, 1, 40 if small else 8192, False),
        ("prefill CSA T=1024", 1, 17 if small else 1024, 64 if small else 16384, True),
    ):
        g = torch.Generator(device=dev).manual_seed(0)
        q_start = max(c * (4 if csa else 128) - t, w)
        raw_start = q_start - w + 1
        # bf16 kernel inputs (fp32 under --smoke: the interpreter's bf16 tl.dot is broken); the ref
        # gets the same values in fp32
        dt = torch.float32 if small else torch.bfloat16
        args16 = [torch.randn(*shape, device=dev, generator=g).to(dt) for shape in ((b, t, h, d), (b, w - 1 + t, d),
                                                                                   (b, c, d))]  # fmt: skip
        q, raw, comp = (x.float() for x in args16)
        sink = torch.randn(h, device=dev, generator=g)
        visible = torch.full((t,), c, device=dev, dtype=torch.long)
        idx = torch.rand(b, t, c, device=dev, generator=g).topk(k, -1).indices if csa else None
        keys = w + (k if csa else c)
        moved = (q.numel() * 2 + b * t * keys * d * 2 + q.numel() * 2) + (idx.numel() * 8 if csa else 0)
        cases.append(Case(
            "sparse_attn", f"{name} (B={b}, T={t}, C={c})",
            lambda a=args16, v=visible, i=idx, s=sink, rs=raw_start, qs=q_start: tri.sparse_attention_fwd(
                a[0], a[1], rs, qs, w, a[2], v, i, s, d**-0.5)[0],
            lambda v=visible, i=idx, q=q, r=raw, cm=comp, s=sink, rs=raw_start, qs=q_start: ref.sparse_attention(
                q, r, rs, qs, w, cm, v, i, s, d**-0.5)[0],
            moved, 4 * b * t * h * keys * d, "hbm" if t == 1 else "bf16",
        ))  # fmt: skip
    return cases


def mhc_cases(dev, small: bool) -> list[Case]:
    import torch

    from deepfim.kernels.mhc import ref
    from deepfim.kernels.mhc import triton as tri

    t, n, d = (33, 4, 40) if small else (4096, 4, 4096)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(t, n, d, device=dev, generator=g)
    fn = torch.randn((2 + n) * n, n * d, device=dev, generator=g) * (n * d) ** -0.5
    base, scale = torch.randn((2 + n) * n, device=dev, generator=g), torch.ones(3, device=dev)
    logits = torch.randn(t, n, n, device=dev, generator=g)
    f = torch.randn(t, d, device=dev, generator=g)
    _, post, comb = ref.hc_pre(x, fn, base, scale, 20, 1e-6, 1e-6)
    xb = x if small else x.bfloat16()
    xb_ref = xb.float()
    return [
        Case("mhc", f"sinkhorn (T={t}, n={n}, 20 iters)", lambda: tri.sinkhorn(logits, 20, 1e-6),
             lambda: ref.sinkhorn(logits, 20, 1e-6), 2 * logits.numel() * 4),
        Case("mhc", f"hc_pre fused (T={t}, n={n}, D={d}, x bf16)",
             lambda: tri.hc_pre(xb, fn, base, scale, 20, 1e-6, 1e-6)[0],
             lambda: ref.hc_pre(xb_ref, fn, base, scale, 20, 1e-6, 1e-6)[0],
             2 * xb.numel() * xb.element_size() + fn.numel() * 4 + t * d * 4),
        Case("mhc", f"hc_post (T={t}, n={n}, D={d}, fp32)", lambda: tri.hc_post(f, x, post, comb),
             lambda: ref.hc_post(f, x, post, comb), (f.numel() + 2 * x.numel()) * 4),
    ]  # fmt: skip


def compressor_cases(dev, small: bool) -> list[Case]:
    import torch

    from deepfim.kernels.compressor import ref
    from deepfim.kernels.compressor import triton as tri

    cases = []
    shapes = (("CSA", 5, 4, 48, True), ("HCA", 3, 8, 40, False)) if small else (
        ("CSA", 1024, 4, 1024, True), ("HCA", 32, 128, 512, False))  # fmt: skip
    for name, w, m, c, overlap in shapes:
        g = torch.Generator(device=dev).manual_seed(0)
        kv = torch.randn(1, w, m, c, device=dev, generator=g)
        gate = torch.randn(1, w, m, c, device=dev, generator=g)
        d = c // 2 if overlap else c
        cases.append(Case("compressor", f"pool {name} (W={w}, m={m}, c={c}, fp32)",
                          lambda kv=kv, gate=gate, o=overlap: tri.pool_windows(kv, gate, None, None, o)[0],
                          lambda kv=kv, gate=gate, o=overlap: ref.pool_windows(kv, gate, None, None, o)[0],
                          2 * kv.numel() * 4 + w * d * 4))  # fmt: skip
    return cases


def quant_cases(dev, small: bool) -> list[Case]:
    import torch

    from deepfim.kernels.quant import ref
    from deepfim.kernels.quant import triton as tri

    g = torch.Generator(device=dev).manual_seed(0)
    rows, k = (37, 256) if small else (4096, 4096)
    x = torch.randn(rows, k, device=dev, generator=g)
    xi = torch.randn(rows, 4 if small else 64, 128, device=dev, generator=g)  # indexer q: [T, heads, 128]
    w8, s8 = ref.quantize_fp8_blocks(torch.randn(rows, k, device=dev, generator=g))
    w4, s4 = ref.quantize_fp4_packed(torch.randn(rows // 2 or 1, k, device=dev, generator=g))
    xb = x if small else x.bfloat16()
    xb_ref = xb.float()
    return [
        Case("quant", f"fp8 act round trip [{rows}, {k}] /128 bf16", lambda: tri.fp8_round_trip(xb, 128),
             lambda: ref.fp8_round_trip(xb_ref, 128), 2 * xb.numel() * xb.element_size()),
        Case("quant", f"fp4 indexer round trip {list(xi.shape)} /32 fp32", lambda: tri.fp4_round_trip(xi, 32),
             lambda: ref.fp4_round_trip(xi, 32), 2 * xi.numel() * 4),
        Case("quant", f"fp4 pack [{rows}, {k}] /32 fp32", lambda: tri.quantize_fp4_packed(x, 32)[0],
             lambda: ref.quantize_fp4_packed(x, 32)[0], x.numel() * 4 + x.numel() // 2 + x.numel() // 32),
        Case("quant", f"fp8 block dequant [{rows}, {k}]", lambda: tri.dequant_fp8_blocks(w8, s8),
             lambda: ref.dequant_fp8_blocks(w8, s8), w8.numel() * 5),
        Case("quant", f"fp4 packed dequant [{w4.shape[0]}, {2 * w4.shape[1]}]", lambda: tri.dequant_fp4_packed(w4, s4),
             lambda: ref.dequant_fp4_packed(w4, s4), w4.numel() * 9 + s4.numel()),
    ]  # fmt: skip


def moe_cases(dev, small: bool) -> list[Case]:
    import torch

    from deepfim.kernels.moe import ref
    from deepfim.kernels.moe import triton as tri

    n, e = (63, 24) if small else (4096, 256)
    g = torch.Generator(device=dev).manual_seed(0)
    logits = torch.randn(n, e, device=dev, generator=g)
    bias = 0.1 * torch.randn(e, device=dev, generator=g)

    def sorted_weights(out):
        w, i = out
        return w.gather(1, i.argsort(-1))

    return [
        Case("moe", f"route sqrtsoftplus top-6 (N={n}, E={e})",
             lambda: sorted_weights(tri.route_from_logits(logits, 6, 1.5, "sqrtsoftplus", bias)),
             lambda: sorted_weights(ref.route(ref.scores_from_logits(logits, "sqrtsoftplus"), 6, 1.5, bias)),
             logits.numel() * 4 + n * 6 * 12),
    ]  # fmt: skip


# V4-Flash FP8 projections [N, K] (v4-model.md section 8.2); wo_a is bf16 in the checkpoints' use
FP8_PROJECTIONS = (("attn.wq_a", 1024, 4096), ("attn.wq_b", 32768, 1024), ("attn.wkv", 512, 4096),
                   ("attn.wo_b", 4096, 8192), ("indexer.wq_b", 8192, 1024), ("shared w1/w3", 2048, 4096),
                   ("shared w2", 4096, 2048))  # fmt: skip


def fp8_gemm_cases(dev, small: bool) -> list[Case]:
    import torch

    from deepfim.kernels.fp8_gemm import ref
    from deepfim.kernels.fp8_gemm import triton as tri
    from deepfim.kernels.quant.ref import quantize_fp8_blocks

    g = torch.Generator(device=dev).manual_seed(0)
    cases = []
    prefill = ("attn.wq_b", "attn.wo_b", "shared w1/w3")
    for name, n, k in FP8_PROJECTIONS:
        n, k = (n // 32 + 3, k // 16 + 5) if small else (n, k)  # odd sizes: partial blocks under --smoke
        w, s = quantize_fp8_blocks(torch.randn(n, k, device=dev, generator=g) * k**-0.5)
        for m in (1, 4096) if name in prefill else (1,):
            m = min(m, 37) if small else m
            x = torch.randn(m, k, device=dev, generator=g).to(torch.float32 if small else torch.bfloat16)
            moved = w.numel() + s.numel() + (m * k + m * n) * x.element_size()
            cases.append(Case("fp8_gemm", f"{name} [{n}, {k}] M={m} {str(x.dtype)[6:]}",
                              lambda x=x, w=w, s=s: tri.fp8_linear(x, w, s), lambda x=x, w=w, s=s: ref.fp8_linear(
                                  x.float(), w, s), moved, 2 * m * n * k, "hbm" if m == 1 else "bf16"))  # fmt: skip
    return cases


def moe_gemm_cases(dev, small: bool) -> list[Case]:
    import torch

    from deepfim.kernels.moe import ref as moe_ref
    from deepfim.kernels.moe_gemm import ref
    from deepfim.kernels.moe_gemm import triton as tri

    e, inter, d, k = (8, 64, 96, 6) if small else (256, 2048, 4096, 6)
    g = torch.Generator(device=dev).manual_seed(0)

    def fp4(rows, cols):  # random e2m1 bytes (mean |v| ~ 2) scaled to about cols^-1/2: O(1) outputs
        packed = torch.randint(0, 256, (e, rows, cols // 2), device=dev, generator=g, dtype=torch.uint8)
        exponent = 127 + round(math.log2(cols**-0.5 / 2))
        return packed.view(torch.int8), torch.full((e, rows, cols // 32), exponent, dtype=torch.uint8, device=dev)

    (w1, s1), (w2, s2), (w3, s3) = fp4(inter, d), fp4(d, inter), fp4(inter, d)
    experts = ref.ExpertWeights(w1, w2, w3, s1.view(torch.float8_e8m0fnu), s2.view(torch.float8_e8m0fnu),
                                s3.view(torch.float8_e8m0fnu))  # fmt: skip
    expert_bytes = 3 * inter * d // 2 + 3 * inter * d // 32
    cases = []
    for n in (1, 8, 4096) if not small else (1, 8, 37):
        x = torch.randn(n, d, device=dev, generator=g).to(torch.float32 if small else torch.bfloat16)
        logits = torch.randn(n, e, device=dev, generator=g)
        weights, idx = moe_ref.route(moe_ref.scores_from_logits(logits, "sqrtsoftplus"), k, 1.5)
        used = len(torch.unique(idx))
        decode = n <= 8
        cases.append(Case("moe_gemm", f"FP4 experts N={n} (E={e}, top-{k}, {used} used, D={d}, I={inter})",
                          lambda x=x, w=weights, i=idx: tri.experts_forward(x, w, i, experts, 10.0),
                          lambda x=x, w=weights, i=idx: ref.experts_forward(x.float(), w, i, experts, 10.0),
                          used * expert_bytes + 2 * x.numel() * x.element_size(), 6 * n * k * inter * d,
                          "hbm" if decode else "bf16"))  # fmt: skip
    return cases


BUILDERS = {"sparse_attn": sparse_attn_cases, "mhc": mhc_cases, "compressor": compressor_cases,
            "quant": quant_cases, "moe": moe_cases, "fp8_gemm": fp8_gemm_cases, "moe_gemm": moe_gemm_cases}  # fmt: skip


def _peaks(name: str, gbs: float | None, tflops: float | None) -> tuple[float | None, float | None]:
    """(HBM bytes/s, bf16 FLOP/s) of the device: the command line's, else the table's, else None."""
    hbm, bf16 = next(((h, f) for key, h, f in PEAKS if key in name), (None, None))
    return (gbs * 1e9 if gbs else hbm), (tflops * 1e12 if tflops else bf16)


def _percent(case: Case, seconds: float, hbm: float | None, bf16: float | None) -> str:
    peak, achieved = {"hbm": (hbm, case.bytes), "bf16": (bf16, case.flops)}.get(case.bound, (None, 0))
    return f"{100 * achieved / seconds / peak:5.1f}% {case.bound}" if peak else ""


def _max_err(a, b) -> float:
    a, b = _first(a).float(), _first(b).float()
    return (a - b).abs().max().item() if a.numel() else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    parser.add_argument("--rep-ms", type=int, default=200, help="timing window per measurement (triton do_bench)")
    parser.add_argument("--smoke", action="store_true", help="run every case once on the CPU interpreter, tiny shapes")
    parser.add_argument("--peak-gbs", type=float, help="HBM bandwidth in GB/s for %%peak (default: from a table)")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 TFLOP/s for %%peak (default: from a table)")
    args = parser.parse_args()
    ops = args.ops.split(",")
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        parser.error(f"unknown ops {unknown}; choose from {','.join(OPS)}")
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: kernels are built interpreted
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("kernel_cases: no CUDA device here; the Triton kernels are timed on GPUs only "
              "(correctness on the CPU: OMP_NUM_THREADS=1 .venv/bin/pytest tests/kernels)")  # fmt: skip
        return 0
    dev = torch.device("cpu" if args.smoke else "cuda")
    if args.smoke:
        for op in ops:
            for case in BUILDERS[op](dev, small=True):
                err = _max_err(case.triton(), case.ref())
                status = "ok" if err < 1e-3 else "MISMATCH"
                print(f"smoke {status:8s} {case.op:12s} {case.name}: max err {err:.2e}")
                if status != "ok":
                    return 1
        return 0

    rows = timed_cases(ops, args.rep_ms, args.peak_gbs, args.peak_tflops)
    name = torch.cuda.get_device_name(dev)
    hbm, bf16 = _peaks(name, args.peak_gbs, args.peak_tflops)
    peaks = f"peaks {hbm / 1e9:.0f} GB/s, {bf16 / 1e12:.0f} bf16 TFLOP/s" if hbm and bf16 else (
        "peaks unknown (pass --peak-gbs / --peak-tflops for %peak)")  # fmt: skip
    print(f"device: {name}; {peaks}; medians over {args.rep_ms} ms windows")
    print(f"{'op':12s} {'case':58s} {'triton us':>10s} {'ref us':>10s} {'speedup':>8s} {'GB/s':>8s} {'TFLOP/s':>8s} "
          f"{'max err':>9s} {'%peak':>10s}")  # fmt: skip
    for r in rows:
        tflops = f"{r['tflops']:8.1f}" if r["tflops"] else f"{'':8s}"
        print(f"{r['op']:12s} {r['case']:58s} {r['triton_us']:10.1f} {r['ref_us']:10.1f} {r['speedup']:7.1f}x "
              f"{r['gbs']:8.0f} {tflops} {r['max_err']:9.2e} {r['peak']:>10s}", flush=True)  # fmt: skip
    return 0


def timed_cases(ops, rep_ms: int, peak_gbs: float | None = None, peak_tflops: float | None = None) -> list[dict]:
    """Every case of `ops` on the GPU: median us of the kernel and of its reference (triton's
    do_bench over `rep_ms` windows), bandwidth, TFLOP/s, %peak and max |kernel - ref|."""
    import torch
    from triton.testing import do_bench

    dev = torch.device("cuda")
    hbm, bf16 = _peaks(torch.cuda.get_device_name(dev), peak_gbs, peak_tflops)
    rows = []
    for op in ops:
        for case in BUILDERS[op](dev, small=False):
            err = _max_err(case.triton(), case.ref())
            t_tri = do_bench(case.triton, rep=rep_ms, return_mode="median") * 1e3  # us
            t_ref = do_bench(case.ref, rep=rep_ms, return_mode="median") * 1e3
            rows.append({"op": case.op, "case": case.name, "triton_us": t_tri, "ref_us": t_ref,
                         "speedup": t_ref / t_tri, "gbs": case.bytes / t_tri / 1e3,
                         "tflops": case.flops / t_tri / 1e6 if case.flops else None, "max_err": err,
                         "peak": _percent(case, t_tri * 1e-6, hbm, bf16)})  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
