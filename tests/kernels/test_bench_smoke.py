"""The GPU suite's kernel cases (bench/kernel_cases.py, `deepfim bench gpu`) stay runnable: --smoke
builds every benchmark case at tiny sizes and compares kernel and ref on the CPU interpreter;
without CUDA a plain run exits 0 with a note."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

BENCH = ["-m", "deepfim.bench.kernel_cases"]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *BENCH, *args], capture_output=True, text=True, timeout=300, env=env)


def test_bench_smoke_cases_match_refs():
    result = _run("--smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) >= 15 and all(line.startswith("smoke ok") for line in lines), result.stdout


def test_bench_without_cuda_exits_cleanly():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the real benchmark would run")
    result = _run("--ops", "moe")
    assert result.returncode == 0 and "no CUDA device" in result.stdout, result.stdout + result.stderr
