"""lsp_server/startup_gc.py: the collector paused while the server starts, then the start's
objects frozen out of later collections and the collector back on; a resume without a pause
(a server made in process) changes nothing."""

from __future__ import annotations

import gc

from deepfim.lsp_server import startup_gc


def test_pause_then_resume_freezes_the_start_and_collects_again():
    assert gc.isenabled()
    try:
        startup_gc.pause()
        assert not gc.isenabled()
        before = gc.get_freeze_count()
        startup_gc.resume()
        assert gc.isenabled() and gc.get_freeze_count() > before
        frozen = gc.get_freeze_count()
        startup_gc.resume()  # a second load (settings changed) does not freeze again
        # (frozen objects freed meanwhile, by other threads too, lower the count; a freeze would
        # raise it by every live object)
        assert gc.isenabled() and gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()  # (also what an in-process engine of an earlier test froze: harmless)
        gc.enable()
        startup_gc._managed = False  # the rest of the suite's in-process servers: not ours


def test_resume_without_pause_leaves_the_collector_alone():
    gc.disable()
    frozen = gc.get_freeze_count()
    try:
        startup_gc.resume()
        assert not gc.isenabled() and gc.get_freeze_count() <= frozen
    finally:
        gc.enable()


def test_settle_freezes_what_is_alive_after_a_scan_only_where_the_start_was_managed(monkeypatch):
    monkeypatch.setattr(startup_gc, "_managed", False)
    frozen = gc.get_freeze_count()
    startup_gc.settle()  # an in-process server (tests): the collector is not ours
    assert gc.get_freeze_count() <= frozen
    monkeypatch.setattr(startup_gc, "_managed", True)
    try:
        index = [{"entry": i} for i in range(20_000)]  # what a scan leaves alive
        startup_gc.settle()
        assert gc.isenabled() and gc.get_freeze_count() >= len(index)
    finally:
        gc.unfreeze()
