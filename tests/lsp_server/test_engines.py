"""Backend construction per mode: one factory, shared backends, FIM order."""

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.prompt import FimOrder
from deepfim.lsp_server.engines import BackendSpec, BackendUnavailable, EngineSet, make_backend, specs_for
from deepfim.lsp_server.settings import Settings


class _Backend:
    """Just enough of a backend to be constructed (no completions are made here)."""

    tokenizer_path = str(DEFAULT_MODEL_DIR / "tokenizer.json")

    def __init__(self, orders):
        self.orders = orders
        self.closed = False

    def fim_orders(self, mode):
        return self.orders

    def close(self):
        self.closed = True


def test_modes_share_a_backend_unless_expert_names_its_own_checkpoint(tmp_path):
    built = []

    def factory(spec):
        built.append(spec)
        return _Backend(("psm", "spm"))

    shared = EngineSet.load(Settings(), factory)
    assert len(built) == 1 and shared.get("instant").backend is shared.get("expert").backend
    assert shared.get("instant").fim_order is FimOrder.SPM
    assert shared.describe() == {"instant": "embedded", "expert": "embedded"}

    split = EngineSet.load(Settings(expert_checkpoint=str(tmp_path)), factory)
    assert split.get("instant").backend is not split.get("expert").backend
    assert split.describe()["expert"] == tmp_path.name
    split.close()
    assert split.get("expert").backend.closed


def test_psm_only_checkpoints_get_psm_prompts():
    engines = EngineSet.load(Settings(), lambda spec: _Backend(("psm",)))
    assert engines.get("expert").fim_order is FimOrder.PSM


def test_a_lan_server_serves_both_modes():
    specs = specs_for(Settings(server="gpu-box:7070", token="t", expert_checkpoint=None))
    assert specs["instant"] == specs["expert"] == BackendSpec(server="gpu-box:7070", token="t")
    assert specs["instant"].describe() == "gpu-box:7070"


def test_an_engine_that_cannot_start_is_reported_clearly(tmp_path):
    with pytest.raises(BackendUnavailable, match="in-process engine is not available|empty-ckpt"):
        make_backend(BackendSpec(checkpoint=str(tmp_path / "empty-ckpt")))
    with pytest.raises(BackendUnavailable, match="127.0.0.1:9"):
        make_backend(BackendSpec(server="127.0.0.1:9", token="t"))


def test_the_editor_engine_leaves_a_core_to_the_editor(monkeypatch):
    import os

    import torch

    from deepfim.lsp_server.engines import interactive_threads

    monkeypatch.delenv("DEEPFIM_THREADS", raising=False)
    want = max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1))
    assert interactive_threads() == want and want < max(2, os.cpu_count() or 1)
    monkeypatch.setenv("DEEPFIM_THREADS", "3")
    assert interactive_threads() == 3
