"""The prepared GPU check stays runnable from a CPU machine: bench/gpu_check.sh parses, and its
Flash-layers benchmark runs end to end at tiny widths (--dry-run), graphed steps equal to eager."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, env=env, cwd=BENCH.parent)


def test_the_gpu_check_script_parses_and_names_every_step():
    assert _run("bash", "-n", str(BENCH / "gpu_check.sh")).returncode == 0
    assert _run("bash", "-n", str(BENCH / "gpu_wheels.sh")).returncode == 0
    text = (BENCH / "gpu_check.sh").read_text()
    for step in ("kernel_cases --ops sparse_attn,fp8_gemm,moe_gemm", "bench_flash_layers.py --layers 4",
                 "deepfim.bench.gpu_engine", "complete examples/shop/shop/cart.py:23:1", "--device cuda"):  # fmt: skip
        assert step in text, step


def test_flash_layers_dry_run():
    result = _run(sys.executable, str(BENCH / "bench_flash_layers.py"), "--dry-run", "--layers", "2", "--tokens", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "first-step max |logits eager - graphed| 0.000e+00" in result.stdout
    assert re.search(r"^eager\s+[\d.]+\s+[\d.]+", result.stdout, re.M) and re.search(r"^graphed\s", result.stdout, re.M)


def test_gpu_benchmarks_without_cuda_exit_cleanly():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the real benchmarks would run")
    for script in ([str(BENCH / "bench_flash_layers.py")], ["-m", "deepfim.bench.gpu_engine"]):
        result = _run(sys.executable, *script)
        assert result.returncode == 0 and "no CUDA device" in result.stdout, result.stdout + result.stderr
