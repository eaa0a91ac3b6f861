"""What a bench run writes: results.json (everything) and report.md (for people).

Every number is a `Figure` with its `Method`: how many runs stand behind it, which statistic it
is (median, p95, a single run, an exact count), the spread of the samples, and one sentence
saying what was measured from where to where. A suite that cannot run here (no CUDA, no
transformers) is recorded as skipped with the reason, never with invented figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Method:
    runs: int  # samples (or repetitions) behind the figure
    statistic: str  # "p50", "p95", "p99", "median", "single run", "exact", ...
    spread: dict  # e.g. {"min": .., "max": .., "p95": ..}; {} for a single run or an exact value
    how: str  # what was timed or counted, from where to where


@dataclass
class Figure:
    key: str  # stable id, e.g. "file_open.warm.p50"
    label: str
    value: float | None
    unit: str
    method: Method
    target: str | None = None  # e.g. "<= 150 ms (issue 14)"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]
    method: str  # how the table's numbers were made


@dataclass
class SuiteResult:
    name: str
    status: str = "ok"  # "ok" | "skipped" | "failed"
    reason: str = ""  # why skipped or failed
    settings: dict = field(default_factory=dict)  # the suite's parameters in this run
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # PNG file names in the output folder
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, *figures: Figure | list[Figure]) -> None:
        for f in figures:
            self.figures.extend(f if isinstance(f, list) else [f])


def _clean(value):
    """JSON has no NaN: unknown values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, header: dict, suites: list[SuiteResult]) -> None:
    payload = {**header, "suites": {s.name: asdict(s) for s in suites}}
    path.write_text(json.dumps(_clean(payload), indent=1, sort_keys=False) + "\n", encoding="utf-8")


def fmt(value, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        a = abs(value)
        text = (
            f"{value:,.0f}"
            if a >= 1000
            else f"{value:.1f}"
            if a >= 10
            else f"{value:.2f}"
            if a >= 0.1
            else f"{value:.3g}"
        )
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip()


def _method_text(m: Method) -> str:
    spread = ", ".join(f"{k} {fmt(v)}" for k, v in m.spread.items())
    runs = "" if m.statistic in ("single run", "exact") else f" of {m.runs} run{'s' if m.runs != 1 else ''}"
    return f"{m.statistic}{runs}" + (f" ({spread})" if spread else "") + f": {m.how}"


def markdown(header: dict, suites: list[SuiteResult]) -> str:
    machine, versions = header["machine"], header["versions"]
    lines = [
        "# DeepFIM benchmark report",
        "",
        f"`{header['command']}` — {header['started']} — {header['wall_s']:.0f} s wall",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine.items()],
        "",
        "| versions and settings | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in versions.items()],
        *[f"| {k} | {v} |" for k, v in header["settings"].items()],
        "",
        "Every figure names its method: the statistic, how many runs, the spread of the samples",
        "(min/max/percentiles) and what was measured. Timings are wall-clock on the machine above,",
        "shared with other work (see the load averages). `bench/README.md` describes the suites.",
        "",
        "| suite | status | seconds |",
        "|---|---|---|",
        *[
            f"| [{s.name}](#{s.name}) | {s.status}{': ' + s.reason if s.reason else ''} | {s.seconds:.0f} |"
            for s in suites
        ],
    ]
    for s in suites:
        lines += ["", f"## {s.name}", ""]
        if s.status != "ok":
            lines.append(f"**{s.status}**: {s.reason}")
        if s.settings:
            lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in s.settings.items()))
            lines.append("")
        if s.figures:
            lines += ["| figure | value | target | method |", "|---|---|---|---|"]
            for f in s.figures:
                lines.append(f"| {f.label} | {fmt(f.value, f.unit)} | {f.target or ''} | {_method_text(f.method)} |")
        for t in s.tables:
            lines += [
                "",
                f"**{t.title}** — {t.method}",
                "",
                "| " + " | ".join(t.columns) + " |",
                "|" + "---|" * len(t.columns),
            ]
            lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in t.rows]
        for p in s.plots:
            lines += ["", f"![{p}]({p})"]
        for n in s.notes:
            lines += ["", f"- {n}"]
    return "\n".join(lines) + "\n"
