"""Damaged index and token caches: each case is rebuilt with one log line naming what was
wrong, and the next run finds a good cache again (never a silent degradation every run)."""

from __future__ import annotations

import logging

import msgpack
import pytest
from ctx_fixtures import write_tree

from deepfim.context import cache, tokens
from deepfim.context.prompt_builder import PromptSpec
from deepfim.context.sealed import seal
from deepfim.context.settings import PromptBudget
from deepfim.context.workspace import Workspace


def _repo(tmp_path):
    return write_tree(tmp_path / "repo", {f"m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(5)})


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _unsealed(path):  # what version 1 wrote: plain msgpack
    path.write_bytes(msgpack.packb({"version": cache.CACHE_VERSION, "files": {}, "skipped": {}}))


def _wrong_types(path):  # sealed correctly (the checksum matches) but rows of the wrong shape
    payload = msgpack.unpackb(path.read_bytes()[len(cache.MAGIC) + 16 :], raw=False)
    payload["files"]["m0.py"][6] = [["f0", "function", "line one", "def f0():"]]
    path.write_bytes(seal(cache.MAGIC, msgpack.packb(payload, use_bin_type=True)))


@pytest.mark.parametrize(
    "damage, named",
    [(_truncate, "checksum mismatch"), (_flip, "checksum mismatch"), (_unsealed, "not a DFIDX2 file"),
     (_wrong_types, "m0.py: malformed definitions")],
)  # fmt: skip
def test_a_damaged_index_cache_is_rebuilt_once(tmp_path, cache_dir, caplog, damage, named):
    root = _repo(tmp_path)
    Workspace(root, cache_dir=cache_dir).scan()
    index = next(cache_dir.rglob("index.msgpack"))
    damage(index)
    with caplog.at_level(logging.WARNING):
        rebuilt = Workspace(root, cache_dir=cache_dir).scan()
    (warning,) = _warnings(caplog)
    assert named in warning and "rebuilding" in warning and str(index) in warning
    assert (rebuilt.parsed, rebuilt.files, rebuilt.definitions) == (5, 5, 5)
    caplog.clear()
    warm = Workspace(root, cache_dir=cache_dir).scan()
    assert (warm.parsed, warm.reused) == (0, 5) and _warnings(caplog) == []  # good again


def _pack(root, cache_dir, tok):
    ws = Workspace(root, cache_dir=cache_dir)
    ws.scan()
    spec = PromptSpec(budget=PromptBudget(repository=2048))
    prompt = ws.prompt(tok, spec, root / "m0.py", "def f0():\n    ", "\n").prompt
    ws.save()
    return ws, prompt


def _out_of_vocabulary(path, vocab_size):
    payload = msgpack.unpackb(path.read_bytes()[len(tokens.MAGIC) + 16 :], raw=False)
    key = sorted(payload["ids"])[0]
    payload["ids"][key] = (vocab_size + 5).to_bytes(4, "little") * 3
    path.write_bytes(seal(tokens.MAGIC, msgpack.packb(payload, use_bin_type=True)))


@pytest.mark.parametrize("damage, named", [("truncate", "checksum mismatch"), ("oov", "1 entries dropped")])
def test_a_damaged_token_cache_is_re_tokenized_and_never_reaches_a_prompt(tmp_path, cache_dir, tok, caplog,
                                                                         damage, named):  # fmt: skip
    root = _repo(tmp_path)
    _, clean = _pack(root, cache_dir, tok)
    (store,) = cache_dir.rglob("tokens-*.msgpack")
    if damage == "truncate":
        _truncate(store)
    else:
        _out_of_vocabulary(store, tok.vocab_size)
    with caplog.at_level(logging.WARNING):
        _, prompt = _pack(root, cache_dir, tok)
    (warning,) = _warnings(caplog)
    assert named in warning and str(store) in warning
    assert prompt.ids == clean.ids and max(prompt.ids) < tok.vocab_size
    caplog.clear()
    _pack(root, cache_dir, tok)
    assert _warnings(caplog) == []  # the store was rewritten whole
