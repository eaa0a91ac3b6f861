"""`deepfim logits` and `deepfim generate` (engine/cli.py), run in-process through the CLI."""

from __future__ import annotations

import json
import shutil

import torch

from deepfim.cli import main


def test_logits_by_ids_need_no_tokenizer(tiny_checkpoint, tiny_model, tmp_path, capsys):
    bare = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_checkpoint, bare)
    (bare / "tokenizer.json").unlink()
    assert main(["logits", "--checkpoint", str(bare), "--ids", "5,17,300", "--last", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        want = tiny_model(torch.tensor([[5, 17, 300]])).logits[0, -1]
    assert out["ids"] == [5, 17, 300] and out["positions"] == [2]
    assert torch.allclose(torch.tensor(out["logits"][0]), want, atol=1e-5)
    assert main(["logits", "--checkpoint", str(bare), "--ids", "5,17", "--top", "2"]) == 0
    assert "    1     17" in capsys.readouterr().out  # ids shown where token strings are unknown
    assert main(["logits", "--checkpoint", str(bare), "--text", "def f("]) == 2
    assert "--ids" in capsys.readouterr().err


def test_logits_reject_ids_outside_the_vocabulary(tiny_checkpoint, capsys):
    assert main(["logits", "--checkpoint", str(tiny_checkpoint), "--ids", "1,999999"]) == 2
    assert "token ids must be in [0, 8192)" in capsys.readouterr().err
