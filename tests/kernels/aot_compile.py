"""Compiles every Triton kernel for an NVIDIA GPU without a GPU, with the launch configurations the
wrappers really choose, and prints each kernel's registers, spills and shared memory.

The interpreter (`TRITON_INTERPRET=1`) checks the math but never runs the GPU compiler, so
shape rules of `tl.dot`, layouts, register pressure and unsupported ops only show up on a GPU.
Here each module's kernels are swapped for recorders, the public wrappers run on small CPU
tensors with V4-Flash dimensions (nothing is computed), and every recorded launch is compiled
with `triton.compile` for the target (ptxas ships inside the triton wheel).

Usage::

    .venv/bin/python tests/kernels/aot_compile.py [--arch 90] [--dtypes bf16,fp32,fp16]

Exits 1 if any kernel fails to compile.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from deepfim.kernels import triton_checks
from deepfim.kernels.compressor import triton as compressor
from deepfim.kernels.fp8_gemm import triton as fp8_gemm
from deepfim.kernels.mhc import triton as mhc
from deepfim.kernels.moe import triton as moe
from deepfim.kernels.moe_gemm import permute as moe_permute
from deepfim.kernels.moe_gemm import triton as moe_gemm
from deepfim.kernels.moe_gemm.ref import ExpertWeights
from deepfim.kernels.quant import triton as quant
from deepfim.kernels.quant.ref import quantize_fp8_blocks
from deepfim.kernels.sparse_attn import triton as sparse_attn

MODULES = (sparse_attn, mhc, compressor, quant, moe, fp8_gemm, moe_gemm, moe_permute)
TYPES = {
    torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.int64: "i64",
    torch.int32: "i32", torch.int8: "i8", torch.uint8: "u8",
}  # fmt: skip
LAUNCH_OPTIONS = ("num_warps", "num_stages")


class Recorder:
    """Stands in for a @triton.jit kernel: `kernel[grid](...)` records the launch instead of running."""

    def __init__(self, fn: triton.runtime.JITFunction) -> None:
        self.fn = fn
        self.launches: list[tuple[tuple, dict]] = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append((args, kwargs))


def _arg_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return "*" + TYPES[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(value).__name__}")


def run_wrappers(dtypes: list[torch.dtype]) -> None:
    """Calls every public wrapper with V4-Flash-like shapes (H=64, d=512, hc=4, D=4096, E=256)."""
    g = torch.Generator().manual_seed(0)
    for dt in dtypes:
        q = torch.randn(1, 1, 64, 512, generator=g).to(dt)
        raw = torch.randn(1, 128, 512, generator=g).to(dt)
        comp = torch.randn(1, 600, 512, generator=g).to(dt)
        sink = torch.zeros(64)
        idx = torch.randint(0, 600, (1, 1, 512), generator=g)
        vis = torch.tensor([600])
        sparse_attn.sparse_attention_fwd(q, raw, 0, 127, 128, comp, None, idx, sink, 0.044, num_splits=4)
        sparse_attn.sparse_attention_fwd(q, raw, 0, 127, 128, comp, vis, None, sink, 0.044, num_splits=1)
        small_q, small_raw = q[:, :, :8, :128], raw[..., :128]  # the tiny model's attention: 8 heads, d = 128
        sparse_attn.sparse_attention_fwd(small_q, small_raw, 0, 127, 128, None, None, None, sink[:8], 0.1)
    for dt in [d for d in dtypes if d != torch.float16]:
        x = torch.randn(2, 3, 4, 4096, generator=g).to(dt)
        fn, base, scale = torch.randn(24, 4 * 4096, generator=g), torch.randn(24), torch.ones(3)
        _, post, comb = mhc.hc_pre(x, fn, base, scale, 20, 1e-6, 1e-6)
        mhc.hc_post(torch.randn(2, 3, 4096).to(dt), x, post, comb)
        mhc.hc_head(x, fn[:4].contiguous(), base[:4].contiguous(), scale[:1].contiguous(), 1e-6, 1e-6)
        kv = torch.randn(1, 4, 4, 1024, generator=g).to(dt)
        compressor.pool_windows(kv, kv, kv[:, 0, :, :512], kv[:, 0, :, :512], True)
        kv = torch.randn(1, 2, 128, 512, generator=g).to(dt)
        compressor.pool_windows(kv, kv, None, None, False)
        a = torch.randn(3, 4096, generator=g).to(dt)
        quant.fp8_round_trip(a, 128)
        quant.fp8_round_trip(a[:, :448].contiguous(), 64)
        quant.fp4_round_trip(a, 32)
        quant.quantize_fp4_packed(a, 32)
        logits = torch.randn(5, 256, generator=g).to(dt)
        for score_func in moe.SCORE_FUNCS:
            moe.route_from_logits(logits, 6, 1.5, score_func, torch.zeros(256))
        moe.route(torch.rand(5, 384, generator=g).to(dt), 6, 2.5, None, torch.zeros(5, 6, dtype=torch.long))
    mhc.sinkhorn(torch.randn(7, 4, 4, generator=g), 20, 1e-6)
    w, s = quantize_fp8_blocks(torch.randn(300, 256, generator=g))
    quant.dequant_fp8_blocks(w, s)
    quant.dequant_fp8_blocks(w, s.float())
    quant.dequant_fp4_packed(torch.zeros(8, 2048, dtype=torch.int8), torch.zeros(8, 128, dtype=torch.uint8))
    run_gemm_wrappers(dtypes)


def run_gemm_wrappers(dtypes: list[torch.dtype]) -> None:
    """FP8 projections (wq_b, wkv: decode and prefill) and the FP4 grouped MoE at V4-Flash widths
    (D = 4096, I = 2048, E = 256, top-6). Weights are torch.empty: never touched, so never resident."""
    wq_b, s_wq_b = torch.empty(32768, 1024, dtype=torch.float8_e4m3fn), torch.empty(256, 8, dtype=torch.uint8)
    wkv, s_wkv = torch.empty(512, 4096, dtype=torch.float8_e4m3fn), torch.empty(4, 32, dtype=torch.float8_e8m0fnu)
    e, inter, d = 256, 2048, 4096
    shapes = ((inter, d), (d, inter), (inter, d))  # w1, w2, w3
    fp4 = ExpertWeights(*(torch.empty(e, r, c // 2, dtype=torch.int8) for r, c in shapes),
                        *(torch.empty(e, r, c // 32, dtype=torch.uint8) for r, c in shapes))  # fmt: skip
    for dt in [d for d in dtypes if d != torch.float16]:
        for tokens in (1, 4096):
            fp8_gemm.fp8_linear(torch.empty(tokens, 1024, dtype=dt), wq_b, s_wq_b)
            fp8_gemm.fp8_linear(torch.empty(tokens, 4096, dtype=dt), wkv, s_wkv)
            idx = torch.randint(0, e, (tokens, 6))
            moe_gemm.experts_forward(torch.empty(tokens, d, dtype=dt), torch.rand(tokens, 6), idx, fp4, 10.0)
    dense = ExpertWeights(*(torch.empty(8, r // 8, c // 8, dtype=torch.bfloat16) for r, c in shapes))
    x = torch.empty(5, d // 8, dtype=torch.bfloat16)
    moe_gemm.experts_forward(x, torch.rand(5, 2), torch.randint(0, 8, (5, 2)), dense, 10.0)


def _divisibility(fn: triton.runtime.JITFunction, params: dict, constexprs: dict) -> dict:
    """The alignment facts a real launch passes the compiler: 16-byte-aligned tensors and integers
    divisible by 16 (triton's "D" specialisation). Without them every load is scalar and the
    register counts below would describe a kernel that never runs."""
    attrs = {}
    for i, name in enumerate(fn.arg_names):
        value = params.get(name)
        if name in constexprs or value is None or isinstance(value, bool):
            continue
        aligned = value.data_ptr() % 16 == 0 if isinstance(value, torch.Tensor) else (
            isinstance(value, int) and value % 16 == 0)  # fmt: skip
        if aligned:
            attrs[(i,)] = [["tt.divisibility", 16]]
    return attrs


def resources(cubin: bytes) -> str:
    """REG / STACK (spills) / SHARED as cuobjdump reports them."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    line = next((l for l in out.splitlines() if "REG:" in l), "")
    return " ".join(p for p in line.split() if p.split(":")[0] in ("REG", "STACK", "LOCAL"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (90: H100/H200)")
    parser.add_argument("--dtypes", default="bf16,fp32,fp16", help="activation dtypes to compile for")
    args = parser.parse_args()
    by_name = {name: dt for dt, name in TYPES.items()}
    dtypes = [by_name[name] for name in args.dtypes.split(",")]
    if triton_checks.interpreting():
        print("unset TRITON_INTERPRET: the interpreter replaces the compiler", file=sys.stderr)
        return 2
    recorders = []
    for module in MODULES:
        for name, value in list(vars(module).items()):
            if name.endswith("_kernel") and isinstance(value, triton.runtime.JITFunction):
                recorders.append(Recorder(value))
                setattr(module, name, recorders[-1])
    triton_checks.interpreting = lambda: True  # let the wrappers take CPU tensors; nothing runs
    run_wrappers(dtypes)

    target = GPUTarget("cuda", args.arch, 32)
    seen, failed = set(), 0
    for rec in recorders:
        for call_args, kwargs in rec.launches:
            params = dict(zip(rec.fn.arg_names, call_args, strict=False)) | kwargs
            constexprs = {p.name: params[p.name] for p in rec.fn.params if p.is_constexpr}
            signature = {k: ("constexpr" if k in constexprs else _arg_type(params[k])) for k in rec.fn.arg_names}
            options = {k: kwargs[k] for k in LAUNCH_OPTIONS if k in kwargs}
            attrs = _divisibility(rec.fn, params, constexprs)
            key = (rec.fn.__name__, tuple(signature.items()), tuple(constexprs.items()), tuple(options.items()),
                   tuple(attrs))  # fmt: skip
            if key in seen:
                continue
            seen.add(key)
            shown = ", ".join(f"{k}={v}" for k, v in constexprs.items())
            ptr_types = sorted({t for t in signature.values() if t.startswith("*")})
            start = time.perf_counter()
            try:
                source = ASTSource(rec.fn, signature, constexprs, attrs)
                compiled = triton.compile(source, target=target, options=options)
            except Exception as exc:  # report every failure, then exit 1
                failed += 1
                print(f"FAIL {rec.fn.__name__}({shown}) {ptr_types}: {type(exc).__name__}: {exc}")
                continue
            print(
                f"ok   {rec.fn.__name__}({shown}) warps={options.get('num_warps', 4)} {','.join(ptr_types)} "
                f"{resources(compiled.asm['cubin'])} SHARED:{compiled.metadata.shared} "
                f"({time.perf_counter() - start:.1f}s)",
                flush=True,
            )
    print(f"sm_{args.arch}: {len(seen)} kernel variants, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
