"""`make_backend`: the one factory, its routing of modes to checkpoints, its errors."""

import shutil

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.api import Mode
from deepfim.engine.backends import BackendSpec, BackendUnavailable, make_backend


def test_modes_share_a_checkpoint_unless_expert_names_its_own(tmp_path):
    shared = make_backend(BackendSpec(threads=1))
    try:
        stats = shared.stats()
        assert len(stats["checkpoints"]) == 1
        assert stats["modes"] == {"instant": str(DEFAULT_MODEL_DIR), "expert": str(DEFAULT_MODEL_DIR)}
    finally:
        shared.close()
    copy = tmp_path / "expert-model"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    split = make_backend(BackendSpec(expert_checkpoint=str(copy), threads=1))
    try:
        stats = split.stats()
        assert len(stats["checkpoints"]) == 2 and stats["modes"]["expert"] == str(copy)
        assert split.fim_orders(Mode.EXPERT) == split.fim_orders(Mode.INSTANT)
        with pytest.raises(ValueError, match="unknown mode 'turbo'"):
            split.fim_orders("turbo")
    finally:
        split.close()


def test_an_engine_that_cannot_start_is_reported_clearly(tmp_path):
    with pytest.raises(BackendUnavailable, match="empty-ckpt"):
        make_backend(BackendSpec(checkpoint=str(tmp_path / "empty-ckpt")))
    with pytest.raises(BackendUnavailable, match="127.0.0.1:9"):
        make_backend(BackendSpec(server="127.0.0.1:9", token="t"))


def test_spec_describes_what_serves_each_mode(tmp_path):
    assert BackendSpec().summary() == {"instant": "embedded", "expert": "embedded"}
    assert BackendSpec(expert_checkpoint=str(tmp_path)).describe(Mode.EXPERT) == tmp_path.name
    assert BackendSpec(server="box:7431").summary() == {"instant": "box:7431", "expert": "box:7431"}
