"""The confidence gate's table: how often a suggestion would be shown at each threshold, and
how often what is shown is right as it stands.

Each task's score is the model's mean log-probability per token of its first suggestion (the
gate's input in `lsp_server/pipeline.py`). At a threshold t, the suggestions scoring ≥ t are
shown; "right as-is" is an exact match with the removed text, the suggestion a developer
would accept without an edit. `calibrate` picks the lowest threshold whose shown suggestions
are right at least a target rate: calibrate on one seed's holes, report on another's.
"""

from __future__ import annotations

from collections.abc import Sequence

from deepfim.engine.evaluation.harness import TaskResult

THRESHOLDS = (None, -2.0, -1.5, -1.0, -0.75, -0.5, -0.35, -0.25, -0.15)


def gate_rows(results: Sequence[TaskResult], thresholds: Sequence[float | None] = THRESHOLDS) -> list[dict]:
    """One row per threshold (None: no gate) over the scored results."""
    scored = [r for r in results if r.score is not None]
    rows = []
    for t in thresholds:
        shown = [r for r in scored if t is None or (r.prediction and r.score >= t)]
        if t is None:
            shown = [r for r in shown if r.prediction]
        rows.append({
            "threshold": t, "n": len(scored), "shown": len(shown),
            "show_rate": len(shown) / len(scored) if scored else 0.0,
            "right_as_is": sum(r.exact for r in shown) / len(shown) if shown else 0.0,
            "edit_similarity": sum(r.edit_sim for r in shown) / len(shown) if shown else 0.0,
            "right_hidden": sum(r.exact for r in scored if r not in shown),
        })  # fmt: skip
    return rows


def calibrate(results: Sequence[TaskResult], target: float, thresholds=THRESHOLDS[1:]) -> float | None:
    """The lowest threshold whose shown suggestions are right as-is at least `target` of the
    time (None: no threshold reaches it, so no gate)."""
    for row in gate_rows(results, sorted(thresholds)):
        if row["shown"] and row["right_as_is"] >= target:
            return row["threshold"]
    return None


def gate_table(rows: list[dict]) -> str:
    lines = ["| gate (mean log-prob ≥) | shown | show rate | right as-is | edit sim of shown | right ones hidden |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        t = "none" if r["threshold"] is None else f"{r['threshold']:.2f}"
        lines.append(
            f"| {t} | {r['shown']}/{r['n']} | {100 * r['show_rate']:.1f} | {100 * r['right_as_is']:.1f} | "
            f"{100 * r['edit_similarity']:.1f} | {r['right_hidden']} |"
        )
    return "\n".join(lines)
