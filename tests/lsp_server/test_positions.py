"""UTF-16/UTF-8/UTF-32 position conversion and the incremental line index."""

import random

import pytest

from deepfim.lsp_server.positions import (
    UTF8,
    UTF16,
    UTF32,
    LineIndex,
    column_to_index,
    index_to_column,
    text_units,
)

# "a😀b": the emoji is one Python char, two UTF-16 units, four UTF-8 bytes.
EMOJI_LINE = "a😀b"
CJK_LINE = "x = '漢字'"


@pytest.mark.parametrize(
    ("line", "character", "encoding", "index"),
    [
        (EMOJI_LINE, 0, UTF16, 0),
        (EMOJI_LINE, 1, UTF16, 1),
        (EMOJI_LINE, 3, UTF16, 2),  # after the surrogate pair
        (EMOJI_LINE, 4, UTF16, 3),
        (EMOJI_LINE, 2, UTF16, 1),  # inside the pair rounds down to the emoji
        (EMOJI_LINE, 99, UTF16, 3),  # past the end clamps to the line end
        (EMOJI_LINE, 5, UTF8, 2),
        (EMOJI_LINE, 2, UTF32, 2),
        (CJK_LINE, 7, UTF16, 7),  # CJK is one UTF-16 unit per character
        (CJK_LINE, 11, UTF8, 7),  # ... and three UTF-8 bytes
        ("", 3, UTF16, 0),
    ],
)
def test_column_to_index(line, character, encoding, index):
    assert column_to_index(line, character, encoding) == index


@pytest.mark.parametrize("encoding", [UTF16, UTF8, UTF32])
def test_index_and_column_round_trip(encoding):
    line = "é😀漢 z🎉"
    for index in range(len(line) + 1):
        assert column_to_index(line, index_to_column(line, index, encoding), encoding) == index


def test_text_units():
    assert text_units("😀", UTF16) == 2
    assert text_units("😀", UTF8) == 4
    assert text_units("😀", UTF32) == 1
    assert text_units("漢字", UTF16) == 2
    assert text_units("abc", UTF8) == 3


def test_line_breaks_are_lf_crlf_and_lone_cr_only():
    text = "a\r\nb\rc\nd\x0ce\u2028f"
    index = LineIndex(text)
    assert index.line_count == 4
    assert [index.line_text(text, i) for i in range(4)] == ["a", "b", "c", "d\x0ce\u2028f"]


def test_offset_and_position_with_crlf_and_emoji():
    text = "x😀\r\ny😀z\r\n"
    index = LineIndex(text)
    assert index.line_count == 3  # trailing break opens an empty last line
    assert index.offset_at(text, 1, 3, UTF16) == text.index("z")
    assert index.position_at(text, text.index("z"), UTF16) == (1, 3)
    assert index.offset_at(text, 0, 99, UTF16) == 2  # clamps before the CRLF
    assert index.offset_at(text, 7, 0, UTF16) == len(text)
    assert index.position_at(text, len(text), UTF16) == (2, 0)


def _random_text(rng: random.Random, n: int) -> str:
    alphabet = ["a", "b", " ", "\n", "\r", "\r\n", "😀", "漢"]
    return "".join(rng.choice(alphabet) for _ in range(n))


def test_incremental_replace_matches_full_rescan():
    rng = random.Random(1234)
    for _ in range(400):
        text = _random_text(rng, rng.randint(0, 40))
        index = LineIndex(text)
        for _ in range(5):
            start = rng.randint(0, len(text))
            end = rng.randint(start, len(text))
            inserted = _random_text(rng, rng.randint(0, 6))
            text = text[:start] + inserted + text[end:]
            index.replace(text, start, end, len(inserted))
            fresh = LineIndex(text)
            assert index.line_count == fresh.line_count, repr(text)
            assert [index.line_start(i) for i in range(index.line_count)] == [
                fresh.line_start(i) for i in range(fresh.line_count)
            ], repr(text)
