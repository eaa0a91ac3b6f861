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


def test_resume_without_pause_leaves_the_collector_alone():
    gc.disable()
    frozen = gc.get_freeze_count()
    try:
        startup_gc.resume()
        assert not gc.isenabled() and gc.get_freeze_count() <= frozen
    finally:
        gc.enable()
