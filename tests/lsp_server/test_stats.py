"""Local latency and acceptance statistics."""

import pytest

from deepfim.lsp_server.stats import AcceptanceStats, LatencyStats


def test_latency_percentiles_per_stage():
    stats = LatencyStats(size=100)
    for ms in range(1, 101):
        stats.record({"total_ms": float(ms), "decode_ms": 2.0 * ms, "cached": False})
    summary = stats.summary()
    assert summary["count"] == 100
    assert summary["p50"] == pytest.approx(50.5) and summary["p95"] == pytest.approx(95.0, abs=0.1)
    assert summary["stages_p50"]["decode"] == pytest.approx(101.0)
    assert LatencyStats().summary()["p50"] is None


def test_acceptance_counts_each_shown_suggestion_once():
    stats = AcceptanceStats()
    stats.on_shown("a", 10)
    stats.on_shown("a", 10)  # typed through: the same suggestion again
    stats.on_shown("b", 4)
    assert stats.on_accept("a", accepted_chars=7)
    assert not stats.on_accept("a", None)  # already settled
    assert stats.on_reject("b") and not stats.on_reject("zzz")
    assert stats.summary() == {"shown": 2, "accepted": 1, "rejected": 1, "accepted_chars": 7, "rate": 0.5}
