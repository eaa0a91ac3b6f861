"""kernels/cbuild.py: a library is rebuilt when a source or a header it includes changes."""

from __future__ import annotations

import ctypes

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
