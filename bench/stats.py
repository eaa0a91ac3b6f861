"""Summaries of timed samples: percentiles, spread, and `Figure`s that carry their method."""

from __future__ import annotations

import math
import statistics

from deepfim.bench.report import Figure, Method


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation (numpy's default); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low, high = math.floor(at), math.ceil(at)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def summary(values: list[float]) -> dict:
    """n, p50, p95, p99, min, max, mean of the samples (the spread every figure reports)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def sample_figures(
    key: str,
    label: str,
    values: list[float],
    unit: str,
    how: str,
    stats: tuple[str, ...] = ("p50", "p95", "p99"),
    target: dict | None = None,
) -> list[Figure]:
    """One figure per statistic of the same samples; each names the runs and the spread."""
    s = summary(values)
    spread = {k: s[k] for k in ("min", "max", "p50", "p95") if k in s} if s["n"] > 1 else {}
    out = []
    for stat in stats:
        goal = (target or {}).get(stat)
        out.append(
            Figure(
                key=f"{key}.{stat}",
                label=f"{label} {stat}",
                value=s.get(stat),
                unit=unit,
                method=Method(runs=s["n"], statistic=stat, spread=spread, how=how),
                target=goal,
            )
        )
    return out


def single(
    key: str,
    label: str,
    value: float | None,
    unit: str,
    how: str,
    runs: int = 1,
    statistic: str = "single run",
    spread: dict | None = None,
    target: str | None = None,
) -> Figure:
    """A figure from one measurement, a count, or a value computed exactly (`statistic` says)."""
    method = Method(runs=runs, statistic=statistic, spread=spread or {}, how=how)
    return Figure(key=key, label=label, value=value, unit=unit, method=method, target=target)


def median_figure(key: str, label: str, values: list[float], unit: str, how: str, target: str | None = None) -> Figure:
    s = summary(values)
    spread = {k: s[k] for k in ("min", "max") if k in s}
    return Figure(
        key=key,
        label=label,
        value=s.get("p50"),
        unit=unit,
        method=Method(runs=s["n"], statistic="median", spread=spread, how=how),
        target=target,
    )
