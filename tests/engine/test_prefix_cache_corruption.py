"""Saved prefix-cache snapshots that went bad: each case is ignored or partly dropped with one
log line naming what was wrong, and what is served afterwards equals a cold computation."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from test_prefix_cache import prefill

from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.prefix_cache import PrefixCache
from deepfim.engine.serving.speculative import SpeculativeConfig

IDS = list(range(500, 1100))
NO_DRAFTS = SpeculativeConfig(enabled=False)


@pytest.fixture(scope="module")
def saved(tiny_model, tiny_checkpoint, tmp_path_factory):
    """A directory holding the cache of one 600-token prefill, and its entry count."""
    cache = PrefixCache()
    prefill(ModelRunner(tiny_model, Tokenizer.from_file(tiny_checkpoint), cache, NO_DRAFTS), IDS)
    directory = tmp_path_factory.mktemp("prefix")
    cache.save(directory, model_key="model-a")
    return directory, cache.stats()["entries"]


def _copy(saved, tmp_path):
    directory, _ = saved
    for name in ("prefix_cache.json", "prefix_cache.safetensors"):
        (tmp_path / name).write_bytes((directory / name).read_bytes())
    return tmp_path


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_intact_cache_loads_whole(saved, tmp_path, caplog):
    directory = _copy(saved, tmp_path)
    assert PrefixCache().load(directory, model_key="model-a") == saved[1]
    assert _warnings(caplog) == []


def test_a_flipped_byte_drops_the_entries_that_use_it_and_keeps_the_rest(
    saved, tmp_path, caplog, tiny_model, tiny_checkpoint
):
    directory = _copy(saved, tmp_path)
    path = directory / "prefix_cache.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x40  # inside the last tensor's data
    path.write_bytes(bytes(data))
    cache = PrefixCache()
    loaded = cache.load(directory, model_key="model-a")
    assert 0 < loaded < saved[1]
    (warning,) = _warnings(caplog)
    assert "does not match its digest" in warning and "dropped" in warning
    tok = Tokenizer.from_file(tiny_checkpoint)
    hot = prefill(ModelRunner(tiny_model, tok, cache, NO_DRAFTS), IDS + [7, 8])
    cold = prefill(ModelRunner(tiny_model, tok, None, NO_DRAFTS), IDS + [7, 8])
    assert torch.equal(hot.last_logits, cold.last_logits)  # nothing corrupt was served


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda d: (d / "prefix_cache.safetensors").write_bytes(b"\x00" * 10), "unreadable prefix cache"),
        (lambda d: (d / "prefix_cache.safetensors").unlink(), "unreadable prefix cache"),
        (lambda d: (d / "prefix_cache.json").write_text("{broken"), "unreadable prefix cache"),
        (lambda d: (d / "prefix_cache.json").write_text("[1, 2]"), "another format or model"),
        (lambda d: _edit_index(d, version=2), "another format or model"),
        (lambda d: _edit_index(d, digests="nope"), "unreadable prefix cache"),
        (lambda d: _edit_index(d, entries=[{"key": "zz", "pos": 1}]), "dropped"),
    ],
)
def test_a_damaged_cache_is_ignored_with_one_line_naming_why(saved, tmp_path, caplog, damage, named):
    directory = _copy(saved, tmp_path)
    damage(directory)
    cache = PrefixCache()
    assert cache.load(directory, model_key="model-a") == 0
    (warning,) = _warnings(caplog)
    assert named in warning
    assert cache.stats()["entries"] == 0


def test_states_of_other_weights_are_not_restored(saved, tmp_path, caplog):
    directory = _copy(saved, tmp_path)
    assert PrefixCache().load(directory, model_key="model-b") == 0
    (warning,) = _warnings(caplog)
    assert "model-a" in warning and "model-b" in warning


def _edit_index(directory, **changes) -> None:
    path = directory / "prefix_cache.json"
    index = json.loads(path.read_text())
    index.update(changes)
    path.write_text(json.dumps(index))
