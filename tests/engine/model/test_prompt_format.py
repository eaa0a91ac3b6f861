"""The FIM prompt layout (engine/model/prompt_format.py): PSM and SPM, segments, a stable prefix."""

from __future__ import annotations

from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt


def test_psm_and_spm_layouts(tok):
    sp = tok.special
    psm = build_fim_prompt(tok, "def add(a, b):\n    return ", "\n", FimOrder.PSM, path="m.py",
                           context_files=[("util.py", "X = 1\n")], repo_name="demo")  # fmt: skip
    ids = psm.ids
    assert ids[0] == sp.bos
    assert ids.index(sp.fim_begin) < ids.index(sp.fim_hole) < ids.index(sp.fim_end) == len(ids) - 1
    assert [s.kind for s in psm.segments] == ["header", "file", "cursor_file", "prefix", "suffix"]
    spm = build_fim_prompt(tok, "def add(a, b):\n    return ", "\n", FimOrder.SPM, path="m.py")
    i_hole, i_end = spm.ids.index(sp.fim_hole), spm.ids.index(sp.fim_end)
    assert spm.ids[i_hole - 1] == sp.fim_begin and i_hole < i_end < len(spm.ids) - 1  # prefix comes last
    assert [s.kind for s in spm.segments][-2:] == ["suffix", "prefix"]
    longer = build_fim_prompt(tok, "def add(a, b):\n    return a", "\n", FimOrder.SPM, path="m.py")
    common = spm.segments[-1].start  # typing at the cursor only changes tokens after the suffix
    assert longer.ids[:common] == spm.ids[:common]
