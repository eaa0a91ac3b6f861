"""`deepfim plan`: the memory plan before loading, and exit status 3 with the figures when it does not fit."""

from __future__ import annotations

import json

from deepfim.cli import main


def test_v4_flash_on_one_h200_does_not_fit_but_fits_192_gib(capsys):
    assert main(["plan", "--model", "v4-flash", "--device", "cuda", "--memory-gib", "139"]) == 3
    captured = capsys.readouterr()
    assert "fp4" in captured.out and "compressed entries" in captured.out
    assert "does not fit cuda: it needs 149.2" in captured.err and "139.00 GiB are free" in captured.err
    assert main(["plan", "--model", "v4-flash", "--device", "cuda", "--memory-gib", "192", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["weights"]["fp8"] + plan["weights"]["fp4"] + plan["weights"]["scales"] > 145 << 30


def test_v4_pro_per_device_of_eight(capsys):
    args = ["plan", "--model", "v4-pro", "--device", "cuda", "--tp", "8", "--ep", "8", "--json", "--memory-gib", "139"]
    assert main(args) == 0
    per_device = json.loads(capsys.readouterr().out)
    assert main(["plan", "--model", "v4-pro", "--device", "cuda", "--json", "--memory-gib", "1024"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["weights"]["fp4"] == 8 * per_device["weights"]["fp4"]  # experts: one eighth each
    assert per_device["state"] == whole["state"]  # every rank holds the whole state
    assert main(["plan", "--model", "v4-pro", "--tp", "3"]) == 2
    assert "n_heads=128 is not divisible by tp=3" in capsys.readouterr().err


def test_a_checkpoint_on_the_cpu(tiny_checkpoint, capsys):
    assert main(["plan", "--checkpoint", str(tiny_checkpoint), "--context", "4096", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "memory plan for cpu" in out and "state (2 x 4096 tokens)" in out and "fp32" in out
    assert main(["plan", "--checkpoint", str(tiny_checkpoint), "--context", "0"]) == 2
    assert "--context and --batch must be positive" in capsys.readouterr().err
