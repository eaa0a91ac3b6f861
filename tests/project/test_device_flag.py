"""`--device` on every command that loads a model (one helper, deepfim/devices.py), the language
server's `device` setting, and the clear refusal when the machine has no such CUDA device."""

from __future__ import annotations

import pytest
import torch

from deepfim.cli import command_parser, main
from deepfim.devices import DeviceError, check_device_spelling, resolve_device
from deepfim.engine.backends import BackendUnavailable
from deepfim.lsp_server.backend_session import BackendSession, spec_for
from deepfim.lsp_server.editor_settings import Settings, parse_settings

MODEL_COMMANDS = ("complete", "generate", "logits", "eval", "lsp", "serve", "plan")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_takes_the_same_device_flag(command, capsys):
    parser = command_parser(command)
    assert parser.get_default("device") == "cpu"
    extra = {"complete": ["f.py:1:1"], "plan": ["--model", "v4-flash"], "logits": ["--ids", "1"]}.get(command, [])
    assert parser.parse_args([*extra, "--device", "cuda:3"]).device == "cuda:3"
    with pytest.raises(SystemExit):
        parser.parse_args([*extra, "--device", "gpu0"])
    assert "--device: expected cpu, cuda or cuda:N, got 'gpu0'" in capsys.readouterr().err


def test_spelling_and_resolution():
    assert [check_device_spelling(v) for v in ("cpu", "cuda", "cuda:12", " cpu ")] == ["cpu", "cuda", "cuda:12", "cpu"]
    for bad in ("CUDA", "cuda:", "cuda:-1", "mps", "", 3):
        with pytest.raises(ValueError, match="expected cpu, cuda or cuda:N"):
            check_device_spelling(bad)
    assert resolve_device("cpu") == torch.device("cpu")


@NO_CUDA
def test_asking_for_cuda_without_one_says_so(capsys):
    with pytest.raises(DeviceError, match=r"^no CUDA device: "):
        resolve_device("cuda:1")
    assert main(["logits", "--ids", "1,2", "--device", "cuda"]) == 2
    assert "deepfim logits: no CUDA device: " in capsys.readouterr().err
    assert main(["generate", "--device", "cuda:0"]) == 2
    assert "deepfim generate: no CUDA device: " in capsys.readouterr().err


def test_the_language_server_setting(tmp_path):
    settings, problems = parse_settings({"device": "cuda:1"})
    assert settings.device == "cuda:1" and not problems
    assert spec_for(settings).device == "cuda:1"
    assert spec_for(Settings()).device == "cpu"
    settings, problems = parse_settings({"device": "gpu"})
    assert settings.device == "cpu" and problems == [
        "deepfim.device: expected cpu, cuda or cuda:N, got 'gpu'; using the default ('cpu')"
    ]


@NO_CUDA
def test_a_cuda_setting_without_cuda_fails_the_backend_with_the_reason():
    with pytest.raises(BackendUnavailable, match="no CUDA device: "):
        BackendSession.load(spec_for(Settings(device="cuda")))
