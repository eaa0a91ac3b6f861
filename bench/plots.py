"""PNG plots (matplotlib, headless Agg backend), small: 100 dpi, one figure each."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, path: Path, title: str) -> str:
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def cdf(
    path: Path,
    series: dict[str, list[float]],
    title: str,
    xlabel: str = "latency (ms)",
    marks: dict[str, float] | None = None,
) -> str:
    """Empirical CDF of each sample series on a log x axis; vertical lines at `marks`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for name, values in series.items():
        if not values:
            continue
        xs = sorted(values)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=f"{name} (n={len(xs)})")
    for name, x in (marks or {}).items():
        ax.axvline(x, linestyle=":", color="grey")
        ax.text(x, 0.02, f" {name}", rotation=90, color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of requests answered")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _finish(plt, fig, ax, path, title)


def lines(path: Path, x: list[float], series: dict[str, list[float]], title: str, xlabel: str, ylabel: str,
          logx: bool = True, logy: bool = False, right: dict[str, list[float]] | None = None,
          right_label: str = "") -> str:  # fmt: skip
    """Line plot of series against x (optionally a second y axis on the right)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for name, ys in series.items():
        ax.plot(x[: len(ys)], ys, marker="o", label=name)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if right:
        ax2 = ax.twinx()
        # dashed, in colours of their own: the right axis's series must not look alike
        styles = (("tab:red", "s"), ("tab:purple", "^"), ("tab:brown", "D"))
        for i, (name, ys) in enumerate(right.items()):
            colour, marker = styles[i % len(styles)]
            ax2.plot(x[: len(ys)], ys, marker=marker, linestyle="--", color=colour, label=name)
        ax2.set_ylabel(right_label)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="upper left")
    return _finish(plt, fig, ax, path, title)


def bars(path: Path, groups: list[str], series: dict[str, list[float]], title: str, ylabel: str,
         stacked: bool = False, logy: bool = False) -> str:  # fmt: skip
    """Grouped (or stacked) bars: one group per entry of `groups`, one bar per series."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) + 3), 4.2), dpi=100)
    n = max(1, len(series))
    width = 0.8 if stacked else 0.8 / n
    bottom = [0.0] * len(groups)
    for i, (name, ys) in enumerate(series.items()):
        ys = [y if y is not None else 0.0 for y in ys]
        xs = [g + (0 if stacked else (i - (n - 1) / 2) * width) for g in range(len(groups))]
        ax.bar(xs, ys, width, bottom=bottom if stacked else None, label=name)
        if stacked:
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(plt, fig, ax, path, title)
