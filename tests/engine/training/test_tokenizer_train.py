"""The embedded tokenizer.json: special tokens by name, exact round trips, compact indentation;
and the trainer itself on a few files."""

from __future__ import annotations

import json
import random

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model import tokenizer as T
from deepfim.engine.training.corpus import CorpusFile
from deepfim.engine.training.tokenizer_train import SPECIALS, train_tokenizer, truncate_vocab

ROUND_TRIP = [
    "def f(x):\n\treturn x\t# tab\n",
    "line one\r\nline two\r\n\r\n",
    "emoji 😀🚀 and flags 🇫🇷, ZWJ 👩‍💻",
    "中文注释：计算总和 / 日本語のコメント / 한국어",
    "nul \x00 bell \x07 replacement \ufffd bom \ufeff lone combining \u0301",
    "<｜fim▁hole｜> <｜fim▁begin｜><｜end▁of▁sentence｜> <｜fim▁hole <|endoftext|>",
    "    " * 12 + "x = 1234567890.5e-3\n",
    "",
    " ",
    "\n\n\n",
]


def test_specials_are_found_by_name_with_v4_order_for_bos_eos_pad(tokenizer):
    sp = tokenizer.special
    assert (sp.bos, sp.eos, sp.pad) == (0, 1, 2)
    for name in T.ALL_SPECIALS:
        assert tokenizer.token_id(name) is not None, name
    assert sp.has_file_markers and sp.has_repo_markers
    assert tokenizer.vocab_size == 8192


def test_only_bos_eos_pad_are_flagged_special_like_v4():
    spec = json.loads((DEFAULT_MODEL_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    flags = {a["content"]: a["special"] for a in spec["added_tokens"]}
    assert flags[T.BOS] and flags[T.EOS] and flags[T.PAD]
    assert not flags[T.FIM_HOLE] and not flags[T.FILE_BEGIN]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_is_exact(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text


def test_special_strings_in_text_stay_text(tokenizer):
    ids = tokenizer.encode(f"a {T.FIM_HOLE} b")
    assert not set(ids) & tokenizer.special_id_set


def test_indentation_runs_are_one_token(tokenizer):
    for width in (4, 8, 12, 16, 24):
        pieces = [tokenizer.decode([i]) for i in tokenizer.encode("\n" + " " * width + "return x")]
        assert pieces == ["\n", " " * (width - 1), " return", " x"], (width, pieces)


def test_digits_split_in_runs_of_at_most_three(tokenizer):
    pieces = [tokenizer.decode([i]) for i in tokenizer.encode("1234567")]
    assert "".join(pieces) == "1234567" and max(map(len, pieces)) <= 3


def _files() -> list[CorpusFile]:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(3, 9))) for _ in range(60)]
    files = []
    for i in range(40):
        lines = [f"def {rng.choice(words)}({rng.choice(words)}, {rng.choice(words)}):" for _ in range(8)]
        text = "\n".join(f"{line}\n    return {rng.choice(words)} + {rng.randint(0, 999)}\n" for line in lines)
        files.append(CorpusFile(f"p/m{i}.py", "p", "p", "u", "python", "s", text))
    return files


def test_trainer_puts_specials_first_and_output_loads():
    spec = train_tokenizer(_files(), vocab_size=400)
    tok = T.Tokenizer(spec)
    assert [tok.token_id(s) for s in SPECIALS] == list(range(len(SPECIALS)))
    assert tok.vocab_size == 400
    text = "def add3(a, b):\n    return a + b  # ünïcode\n"
    assert tok.decode(tok.encode(text)) == text


def test_truncated_vocab_equals_training_to_that_size():
    big = train_tokenizer(_files(), vocab_size=420)
    small = train_tokenizer(_files(), vocab_size=330)
    assert truncate_vocab(big, 330)["model"] == small["model"]


def test_bad_vocab_size_is_rejected():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(_files(), vocab_size=100)
