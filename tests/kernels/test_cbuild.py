"""kernels/cbuild.py: a library is rebuilt when a source or a header it includes changes, and
when it no longer matches the size and checksum recorded at build."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from deepfim.kernels import cbuild


def test_an_included_header_is_part_of_the_build_key(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "value.h").write_text("#define VALUE 3\n")
    source = tmp_path / "answer.c"
    source.write_text('#include "value.h"\nint answer(void) { return VALUE; }\n')
    first = cbuild._build(source, (), cbuild.FLAGS)
    assert ctypes.CDLL(str(first)).answer() == 3
    assert cbuild._build(source, (), cbuild.FLAGS) == first  # cached
    (tmp_path / "value.h").write_text("#define VALUE 4\n")
    second = cbuild._build(source, (), cbuild.FLAGS)
    assert second != first and ctypes.CDLL(str(second)).answer() == 4


LOAD_AND_CALL = """
import logging, sys
from pathlib import Path
from deepfim.kernels import cbuild
logging.basicConfig(level=logging.WARNING)
print(cbuild.load(Path(sys.argv[1])).answer())
"""


def _damage(library, how: str) -> None:
    data = library.read_bytes()
    if how == "truncated":
        library.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        middle = len(data) // 2
        library.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    else:  # a cache from before integrity records
        cbuild._check_path(library).unlink()


def _answer_library(tmp_path):
    source = tmp_path / "answer.c"
    source.write_text("int answer(void) { return 42; }\n")
    return source


def test_a_truncated_library_is_rebuilt_before_dlopen_instead_of_crashing(tmp_path):
    """A truncated .so used to crash every start with SIGBUS; now a fresh process finds it
    damaged, says so in one log line and rebuilds it."""
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp_path / "cache")}
    source = _answer_library(tmp_path)
    run = [sys.executable, "-c", LOAD_AND_CALL, str(source)]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert first.stdout.strip() == "42" and "damaged" not in first.stderr
    (library,) = (tmp_path / "cache" / "kernels").glob("answer-*.so")
    _damage(library, "truncated")
    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and second.stdout.strip() == "42"  # no SIGBUS, the kernel works
    damaged = [line for line in second.stderr.splitlines() if "damaged" in line]
    assert len(damaged) == 1 and "truncated" in damaged[0] and library.name in damaged[0]
    assert cbuild.integrity_problem(library) is None  # rebuilt, with a fresh record


@pytest.mark.parametrize("how, named", [("flipped", "sha256 differs"), ("unrecorded", "no integrity record")])
def test_a_library_that_does_not_match_its_record_is_rebuilt(tmp_path, monkeypatch, caplog, how, named):
    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(tmp_path / "cache"))
    source = _answer_library(tmp_path)
    library = cbuild._build(source, (), cbuild.FLAGS)
    _damage(library, how)
    assert named in cbuild.integrity_problem(library)
    with caplog.at_level("WARNING", logger=cbuild.log.name):
        assert cbuild._build(source, (), cbuild.FLAGS) == library
    assert [r.getMessage() for r in caplog.records if named in r.getMessage()] != []
    assert cbuild.integrity_problem(library) is None and ctypes.CDLL(str(library)).answer() == 42


def test_a_prebuild_is_the_build_that_load_then_uses(tmp_path, monkeypatch):
    """`prebuild` compiles on a thread while the caller goes on; the `load` after it waits for
    that build and loads it, compiling nothing again."""
    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(tmp_path / "cache"))
    source = _answer_library(tmp_path)
    cbuild.prebuild(source)
    cbuild.prebuild(source)  # a second call while the first runs starts nothing
    assert cbuild.load(source).answer() == 42
    built = sorted(p.name for p in (tmp_path / "cache" / "kernels").iterdir())
    assert len(built) == 2 and built[1] == built[0] + ".check"  # one library and its record, no leftovers
    assert not cbuild._prebuilds[source].thread.is_alive() and not cbuild.pending(source)


def test_a_later_prebuild_waits_to_be_released_and_is_pending_until_built(tmp_path, monkeypatch):
    """`later` compiles only once released (the first request served), at the lowest priority;
    `pending` says whether `load` would wait for it meanwhile."""
    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(tmp_path / "cache"))
    source = _answer_library(tmp_path)
    assert not cbuild.pending(source)
    cbuild.prebuild(source, later=True)
    thread = cbuild._prebuilds[source].thread
    thread.join(0.5)
    assert thread.is_alive() and cbuild.pending(source)
    assert not (tmp_path / "cache" / "kernels").exists() or not any((tmp_path / "cache" / "kernels").iterdir())
    cbuild.release_later()
    cbuild.wait_prebuilt(source)
    assert not cbuild.pending(source)
    assert cbuild.load(source).answer() == 42 and not cbuild.pending(source)


def test_a_load_does_not_wait_for_a_later_prebuild_to_be_released(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cbuild, "LATER_AFTER_S", 60.0)
    source = _answer_library(tmp_path)
    cbuild.prebuild(source, later=True)
    assert cbuild.load(source).answer() == 42  # needed now: built now, not after LATER_AFTER_S


def test_a_process_that_exits_during_a_prebuild_leaves_the_library_built(tmp_path):
    """A short-lived process (`deepfim complete` served before the C step was built) waits at exit
    for its prebuilds, so the next start finds them compiled."""
    source = _answer_library(tmp_path)
    code = "\n".join(["from pathlib import Path", "from deepfim.kernels import cbuild",
                      f"cbuild.prebuild(Path({str(source)!r}), later=True)"])  # fmt: skip
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    built = [p.name for p in (tmp_path / "cache" / "kernels").iterdir()]
    assert any(n.endswith(".so") for n in built) and any(n.endswith(".so.check") for n in built)


def test_a_prebuild_that_fails_leaves_load_to_report_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "broken.c"
    source.write_text("int answer(void) { return }\n")
    cbuild.prebuild(source)
    with caplog.at_level("WARNING"):
        assert cbuild.load(source) is None
    assert "broken.c unavailable" in caplog.text
