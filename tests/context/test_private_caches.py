"""Every cache is 0600 files in 0700 directories, whatever the umask (`deepfim/private_files.py`).

Covers the helper and its four users: the index and token caches (a real `Workspace`), the
compiled-kernel cache (a real C compiler through `kernels/cbuild.py`) and prefix-cache
persistence (a real `PrefixCache` with a state in it). The suite runs as root, for whom modes
never stop a read, so the tests check the modes themselves.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
from pathlib import Path

import pytest
from ctx_fixtures import write_tree

from deepfim.context.cache import CACHE_VERSION
from deepfim.private_files import private_dir, private_temp, write_private


@pytest.fixture
def open_umask():
    """Umask 0: whatever is not set explicitly would come out world-writable."""
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes_under(root: Path) -> tuple[set[int], set[int]]:
    """(modes of the directories, modes of the files) under `root`, `root` included."""
    dirs = {_mode(root)} | {_mode(p) for p in root.rglob("*") if p.is_dir()}
    return dirs, {_mode(p) for p in root.rglob("*") if p.is_file()}


def test_private_dir_creates_every_missing_level_0700_and_narrows_an_existing_one(tmp_path, open_umask):
    os.chmod(tmp_path, 0o755)
    made = private_dir(tmp_path / "a" / "b" / "c")
    assert [_mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3 and made == tmp_path / "a/b/c"
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    private_dir(old)
    assert _mode(old) == 0o700
    assert _mode(tmp_path) == 0o755  # a parent that existed is not ours to change
    assert _mode(private_dir(tmp_path / "a")) == 0o700  # repeatable


def test_write_private_is_atomic_and_0600(tmp_path, open_umask):
    target = tmp_path / "d" / "f.bin"
    write_private(target, b"one")
    first = target.stat().st_ino
    write_private(target, "two")
    assert target.read_text() == "two" and _mode(target) == 0o600 and target.stat().st_ino != first
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, open_umask):
    target = tmp_path / "f"
    write_private(target, b"old")
    with pytest.raises(RuntimeError), private_temp(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_writer_that_replaces_the_temporary_file_still_gives_0600(tmp_path, open_umask):
    with private_temp(tmp_path / "lib.so") as tmp:
        tmp.unlink()  # as a linker does: a new file with the umask's mode
        tmp.write_bytes(b"\x7fELF")
        os.chmod(tmp, 0o755)
    assert _mode(tmp_path / "lib.so") == 0o600


def test_index_and_token_caches_are_private(tmp_path, cache_dir, make_workspace, tok, open_umask):
    stale = cache_dir / "context-v1" / "repo-0123456789abcdef"
    write_tree(stale, {"index.msgpack": "a secret in a cache of the old version"})
    root = write_tree(tmp_path / "repo", {"a.py": "def f():\n    return 1\n", "b.py": "from a import f\n"})
    ws = make_workspace(root)
    ws.prepare_tokens(tok)
    ws.save()
    assert not (cache_dir / "context-v1").exists()  # older versions may hold unredacted text
    written = cache_dir / f"context-v{CACHE_VERSION}"
    names = {p.name for p in written.rglob("*") if p.is_file()}
    assert "index.msgpack" in names and any(n.startswith("tokens-") for n in names)
    assert _modes_under(written) == ({0o700}, {0o600})
    # a cache file left 0644 by an older version is 0600 once it is written again
    index = next(written.rglob("index.msgpack"))
    os.chmod(index, 0o644)
    (root / "a.py").write_text("def f():\n    return 2\n")
    ws.scan()
    assert _mode(index) == 0o600


def test_compiled_kernels_are_private(tmp_path, monkeypatch, open_umask):
    if not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    from deepfim.kernels import cbuild

    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "twice.c"
    source.write_text("int twice(int x) { return 2 * x; }\n")
    lib = cbuild.load(source)
    assert lib is not None and lib.twice(ctypes.c_int(21)) == 42
    assert _modes_under(tmp_path / "cache") == ({0o700}, {0o600})
    # a library cached 0755 by an older version is narrowed when it is next used
    built = next((tmp_path / "cache" / "kernels").glob("twice-*.so"))
    os.chmod(built, 0o755)
    cbuild._loaded.pop(source)
    assert cbuild.load(source) is not None and _mode(built) == 0o600


def test_prefix_cache_snapshots_are_private(tmp_path, open_umask):
    import torch

    from deepfim.engine.model.state import ModelState
    from deepfim.engine.serving.snapshot_store import SnapshotStore

    store = SnapshotStore(tmp_path / "cache", "model-key")
    store.save(b"\x01" * 16, ModelState(pos=3, last_hidden=torch.ones(1, 1, 2, 4)))
    assert [p.name for p in store.directory.iterdir()] == [("01" * 16) + ".safetensors"]
    assert _modes_under(tmp_path / "cache") == ({0o700}, {0o600})
    assert store.load(b"\x01" * 16).pos == 3
