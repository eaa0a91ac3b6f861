"""Index scans hold back while a completion is in flight (lsp_server/scan_pacing.py)."""

from __future__ import annotations

import threading
import time

from deepfim.lsp_server import scan_pacing
from deepfim.lsp_server.scan_pacing import ScanPacing


def _scan_thread(pacing: ScanPacing, files: int, read: list[float]) -> threading.Thread:
    def scan() -> None:
        for _ in range(files):
            pacing.wait_turn()
            read.append(time.monotonic())

    thread = threading.Thread(target=scan)
    thread.start()
    return thread


def test_a_scan_reads_nothing_while_a_completion_is_in_flight():
    pacing, read = ScanPacing(), []
    with pacing.completion():
        with pacing.completion():  # two at once: the scan waits for both
            thread = _scan_thread(pacing, 3, read)
            time.sleep(0.2)
            assert read == []
        time.sleep(0.2)
        assert read == []  # one is still in flight
        answered = time.monotonic()
    thread.join(5)
    assert len(read) == 3 and min(read) >= answered


def test_an_idle_server_does_not_slow_a_scan():
    pacing, read = ScanPacing(), []
    started = time.monotonic()
    _scan_thread(pacing, 500, read).join(5)
    assert len(read) == 500 and time.monotonic() - started < 1.0


def test_requests_without_pause_cannot_keep_the_index_from_being_built(monkeypatch):
    monkeypatch.setattr(scan_pacing, "MAX_WAIT_S", 0.05)
    pacing, read = ScanPacing(), []
    with pacing.completion():  # never answered during the scan
        _scan_thread(pacing, 4, read).join(5)
    assert len(read) == 4
    assert read[-1] - read[0] >= 0.1  # it waited MAX_WAIT_S before each file
