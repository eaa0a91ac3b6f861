"""The language server's backend session: the spec from the settings, FIM order per mode,
threads that leave a core to the editor."""

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.backends import BackendSpec
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.lsp_server import backend_session
from deepfim.lsp_server.backend_session import BackendSession, spec_for
from deepfim.lsp_server.editor_settings import Settings


class _Backend:
    """Just enough of a backend to be constructed (no completions are made here)."""

    tokenizer_path = str(DEFAULT_MODEL_DIR / "tokenizer.json")

    def __init__(self, orders):
        self.orders = orders
        self.closed = False

    def fim_orders(self, mode):
        return self.orders[mode]

    def serving_profile(self, mode):
        from deepfim.engine.model.serving_profile import ServingProfile

        return ServingProfile.defaults(self.orders[mode]).as_dict()

    def close(self):
        self.closed = True


def test_one_backend_serves_both_modes_with_each_modes_fim_order(tmp_path):
    built = []

    def factory(spec):
        built.append(spec)
        return _Backend({"instant": ("psm", "spm"), "expert": ("psm",)})

    session = BackendSession.load(spec_for(Settings(expert_checkpoint=str(tmp_path))), factory)
    assert len(built) == 1 and built[0].expert_checkpoint == str(tmp_path)
    assert session.fim_order("instant") is FimOrder.SPM and session.fim_order("expert") is FimOrder.PSM
    assert session.spec.summary() == {"instant": "embedded", "expert": tmp_path.name}
    session.close()
    assert session.backend.closed


def test_a_lan_server_serves_both_modes_and_gets_no_thread_setting():
    built = []
    BackendSession.load(
        spec_for(Settings(server="gpu-box:7070", token="t")),
        lambda spec: built.append(spec) or _Backend({"instant": ("psm",), "expert": ("psm",)}),
    )
    assert built == [BackendSpec(server="gpu-box:7070", token="t")]
    assert built[0].summary() == {"instant": "gpu-box:7070", "expert": "gpu-box:7070"}


def test_a_backend_whose_tokenizer_is_unreadable_is_closed(tmp_path):
    bad = _Backend({"instant": ("psm",), "expert": ("psm",)})
    bad.tokenizer_path = str(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        BackendSession.load(BackendSpec(), lambda spec: bad)
    assert bad.closed


@pytest.mark.parametrize(("cores", "want"), [(2, 1), (8, 7), (1, 1), (None, 1)])
def test_the_editor_engine_leaves_a_core_to_the_editor(monkeypatch, cores, want):
    monkeypatch.delenv("DEEPFIM_THREADS", raising=False)
    monkeypatch.setattr(backend_session.os, "cpu_count", lambda: cores)
    assert backend_session.interactive_threads() == want
    monkeypatch.setenv("DEEPFIM_THREADS", "3")
    assert backend_session.interactive_threads() == 3
