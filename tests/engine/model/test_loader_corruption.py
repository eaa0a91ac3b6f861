"""Checkpoints that went bad are refused with a message naming what was wrong: per-tensor dtype
and value checks always, and flipped bytes through the optional SHA256SUMS manifest."""

from __future__ import annotations

import random

import pytest
import torch
from test_loader import _copy, _rewrite

from deepfim.cli import main as deepfim
from deepfim.engine.model.loader import CheckpointError, load_model
from deepfim.engine.model.manifest import MANIFEST, verify_manifest, write_manifest


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda t: t["layers.1.attn.wkv.weight"].view(-1).__setitem__(7, float("nan")),
         r"layers\.1\.attn\.wkv\.weight: 1 non-finite values"),
        (lambda t: t["head.weight"].view(-1).__setitem__(0, float("inf")), r"head\.weight: 1 non-finite"),
        (lambda t: t.__setitem__("embed.weight", t["embed.weight"].to(torch.int32)),
         r"embed\.weight: stored as torch\.int32, expected a floating-point weight"),
        (lambda t: t.__setitem__("layers.0.ffn.gate.tid2eid", t["layers.0.ffn.gate.tid2eid"] + 1000),
         r"layers\.0\.ffn\.gate\.tid2eid: expert ids must be in 0\.\.7"),
        (lambda t: t.__setitem__("layers.0.ffn.gate.tid2eid", t["layers.0.ffn.gate.tid2eid"].float()),
         r"tid2eid: stored as torch\.float32, expected integer expert ids"),
    ],
)  # fmt: skip
def test_a_bad_tensor_is_refused_by_name(tiny_checkpoint, tmp_path, edit, named):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    _rewrite(ckpt, edit)
    with pytest.raises(CheckpointError, match=named):
        load_model(ckpt)


def test_finite_weights_whose_sum_overflows_load(tiny_checkpoint, tmp_path):
    """The finiteness check sums each tensor first (loader._finite); a sum past float32's range
    with every value finite is checked value by value, not refused."""
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    _rewrite(ckpt, lambda t: t["head.weight"].view(-1)[:4].fill_(3e38))
    assert torch.isinf(load_model(ckpt).head.weight.sum(dtype=torch.float32))


def _flip_bytes(path, count: int, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")  # leave the safetensors header readable
    rng = random.Random(seed)
    for offset in rng.sample(range(header, len(data)), count):
        data[offset] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def test_flipped_weight_bytes_are_caught_by_the_manifest(tiny_checkpoint, tmp_path, capsys):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    assert deepfim(["checksum", str(ckpt)]) == 0
    assert (ckpt / MANIFEST).read_text().count("\n") == 3  # config, tokenizer, weights
    assert deepfim(["checksum", "--verify", str(ckpt)]) == 0
    load_model(ckpt)  # a checkpoint that matches its manifest loads
    _flip_bytes(ckpt / "model.safetensors", 1000)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 differs from SHA256SUMS"):
        load_model(ckpt)
    capsys.readouterr()
    assert deepfim(["checksum", "--verify", str(ckpt)]) == 2
    assert "model.safetensors: sha256 differs" in capsys.readouterr().err


def test_the_manifest_names_missing_unlisted_and_unreadable_entries(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    assert verify_manifest(ckpt) == 0  # no manifest: nothing to verify, loading still checks tensors
    write_manifest(ckpt)
    assert verify_manifest(ckpt) == 3
    (ckpt / "tokenizer.json").unlink()
    (ckpt / "extra.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    assert "tokenizer.json: missing" in str(err.value) and "extra.safetensors: not listed" in str(err.value)
    (ckpt / MANIFEST).write_text("not a checksum line\n")
    with pytest.raises(CheckpointError, match="SHA256SUMS:1: not a sha256sum line"):
        load_model(ckpt)
