"""The machine and software a bench run measured: CPU, cores, memory, load, versions."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def speed_probe() -> str:
    """One thread's arithmetic (a 256^3 fp32 matmul, in cache) and its reading of a 16 MiB matrix
    (a matrix-vector product, as a decode step reads weights), medians: the same binaries ran
    1.5-2x slower for an hour on this shared machine while its load average did not move (the
    reads slowed, the arithmetic hardly), so a report says how fast the CPU was when it measured."""
    import statistics
    import time

    import torch

    def median_s(fn, runs: int) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times[runs // 5 :])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(256, 256), torch.randn(256, 256)
        m, v = torch.randn(2048, 2048), torch.randn(2048)
        flops = 2 * 256**3 / median_s(lambda: a @ b, 60) / 1e9
        gbs = m.numel() * 4 / median_s(lambda: m @ v, 30) / 1e9
        return f"{flops:.0f} GFLOP/s, {gbs:.0f} GB/s"
    finally:
        torch.set_num_threads(threads)


def machine() -> dict:
    import torch

    info = {
        "cpu": _cpu_model(),
        "cores (visible / usable)": f"{os.cpu_count()} / {len(os.sched_getaffinity(0))}",
        "memory": f"{_mem_total_gib()} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "load average (1, 5, 15 min) at start": load_average(),
        "CPU speed probe at start (one thread: 256^3 matmul; 16 MiB matrix x vector)": speed_probe(),
        "torch threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none (no CUDA)",
    }
    return info


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                               cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return (rev + (" (modified)" if dirty else "")) if rev else "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"


def versions() -> dict:
    import numpy
    import torch

    from deepfim import __version__

    out = {
        "deepfim": f"{__version__}, git {git_rev()}",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    for name in ("transformers", "matplotlib", "pygls", "lsprotocol", "triton"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def rss_mb(pid: int | None = None) -> float:
    """Resident memory now (VmRSS) of a process (default: this one), in MB."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
