"""Local statistics for `deepfim/status`: recent latencies, acceptance of suggestions and the
suggestions shown by the `showByMs` deadline.

Kept in memory only and never sent anywhere.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

RECENT = 500  # latencies kept for percentiles
SHOWN_KEPT = 2000  # suggestion ids remembered for accept/reject


class LatencyStats:
    """Percentiles over the most recent request latencies, in total and per stage."""

    def __init__(self, size: int = RECENT) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._size = size

    def record(self, timings: dict[str, float]) -> None:
        for stage, value in timings.items():
            if stage.endswith("_ms"):
                self._samples.setdefault(stage, deque(maxlen=self._size)).append(float(value))

    def summary(self) -> dict:
        total = self._samples.get("total_ms", ())
        out: dict = {"count": len(total), "p50": None, "p95": None}
        if total:
            p50, p95 = np.percentile(list(total), [50, 95])
            out.update(p50=round(float(p50), 1), p95=round(float(p95), 1))
        out["stages_p50"] = {
            stage.removesuffix("_ms"): round(float(np.percentile(list(values), 50)), 1)
            for stage, values in self._samples.items()
            if stage != "total_ms" and values
        }
        return out


class AcceptanceStats:
    """Suggestions shown, accepted (with characters kept) and rejected."""

    def __init__(self) -> None:
        self._shown: OrderedDict[str, int] = OrderedDict()  # id -> length of the suggestion
        self.shown = 0
        self.accepted = 0
        self.rejected = 0
        self.accepted_chars = 0

    def on_shown(self, suggestion_id: str, length: int) -> None:
        if suggestion_id in self._shown:
            return
        self._shown[suggestion_id] = length
        self.shown += 1
        while len(self._shown) > SHOWN_KEPT:
            self._shown.popitem(last=False)

    def on_accept(self, suggestion_id: str, accepted_chars: int | None) -> bool:
        """Count an acceptance; False for an id that was never shown (or already settled)."""
        length = self._shown.pop(suggestion_id, None)
        if length is None:
            return False
        self.accepted += 1
        self.accepted_chars += length if accepted_chars is None else max(0, min(accepted_chars, length))
        return True

    def on_reject(self, suggestion_id: str) -> bool:
        if self._shown.pop(suggestion_id, None) is None:
            return False
        self.rejected += 1
        return True

    def summary(self) -> dict:
        return {
            "shown": self.shown,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "accepted_chars": self.accepted_chars,
            "rate": round(self.accepted / self.shown, 3) if self.shown else 0.0,
        }


@dataclass
class ShownByDeadline:
    """Suggestions shown by the `showByMs` deadline with their complete lines (`shown`), and what
    became of the rest: written whole and served on accept (`completed`), or not (`dropped`: the
    decode failed, was superseded by another call, or the whole did not go on from the lines)."""

    shown: int = 0
    completed: int = 0
    dropped: int = 0

    def as_dict(self) -> dict:
        return {"shown": self.shown, "completed": self.completed, "dropped": self.dropped}
