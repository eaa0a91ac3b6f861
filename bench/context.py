"""`BenchContext`: what every suite gets — the run's settings and where to write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class BenchContext:
    quick: bool  # CI size: every suite small enough for the whole run to take ~3 minutes
    out: Path  # the report folder (plots are written here)
    tmp: Path  # scratch space, removed after the run
    checkpoint: Path | None  # None: the embedded model
    device: str  # "cpu" or "cuda"
    seed: int
    threads: int | None  # torch threads in this process and in the servers it starts
    scaling_budget_s: float | None = None  # the scaling suite's time budget (None: its default)

    def pick(self, quick, full):
        """The quick or the full setting of a parameter."""
        return quick if self.quick else full

    def log(self, message: str) -> None:
        import sys

        print(f"[bench] {message}", file=sys.stderr, flush=True)
