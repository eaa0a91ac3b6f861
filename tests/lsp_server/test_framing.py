"""The LSP base-protocol reader: bounded lengths and resynchronization on the next header,
whatever the header said and however the bytes were split between reads."""

import json

import pytest

from deepfim.lsp_server.framing import Frame, FrameReader, FramingProblem


def message(obj) -> bytes:
    body = json.dumps(obj).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


A, B = {"id": 1, "method": "a"}, {"id": 2, "method": "b"}
BODY_A, BODY_B = json.dumps(A).encode(), json.dumps(B).encode()


def read(data: bytes, split: str = "whole", **limits) -> list:
    reader = FrameReader(**limits)
    if split == "bytes":
        out = [item for i in range(len(data)) for item in reader.feed(data[i : i + 1])]
    elif split == "halves":
        out = reader.feed(data[: len(data) // 2]) + reader.feed(data[len(data) // 2 :])
    else:
        out = reader.feed(data)
    return out + reader.close()


def bodies(items: list) -> list[bytes]:
    return [item.body for item in items if isinstance(item, Frame)]


def kinds(items: list) -> list[str]:
    return [item.kind for item in items if isinstance(item, FramingProblem)]


@pytest.mark.parametrize("split", ["whole", "halves", "bytes"])
def test_messages_come_out_whole_however_the_bytes_are_split(split):
    data = message(A) + message(B) + b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n" + message(A)
    items = read(data, split)
    assert bodies(items) == [BODY_A, BODY_B, BODY_A]
    assert kinds(items) == []  # a Content-Type header before the length is legal, not junk


def test_lf_only_and_lower_case_headers_are_accepted():
    data = b"content-length: %d\n\n" % len(BODY_A) + BODY_A + message(B)
    assert bodies(read(data)) == [BODY_A, BODY_B]


@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_an_impossible_length_is_refused_and_the_stream_stays_in_sync(split):
    data = b"Content-Length: 1000000000000\r\n\r\n" + BODY_A + message(B)
    items = read(data, split)
    assert kinds(items) == ["oversize"] and "1000000000000" in items[0].detail
    assert bodies(items) == [BODY_B]


def test_an_honest_body_over_the_limit_is_skipped_without_being_buffered():
    big = json.dumps({"text": "x" * 200_000}).encode()
    reader = FrameReader(max_body=1000)
    out = reader.feed(b"Content-Length: %d\r\n\r\n" % len(big))
    for start in range(0, len(big), 1000):
        out += reader.feed(big[start : start + 1000])
        assert reader.buffered <= reader.max_header + 1000  # never the whole body
    out += reader.feed(message(B))
    assert kinds(out) == ["oversize"] and bodies(out) == [BODY_B]


@pytest.mark.parametrize("extra", [1, 2, 7, 19, 33, 40, 60, 5000])
@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_a_length_too_long_ends_the_body_at_the_next_header(extra, split):
    data = b"Content-Length: %d\r\n\r\n" % (len(BODY_A) + extra) + BODY_A + message(B)
    items = read(data, split)
    assert bodies(items) == [BODY_A, BODY_B]  # both survive: the first is even usable
    assert kinds(items) == ["bad-length"]


@pytest.mark.parametrize("short", [1, 5, len(BODY_A) - 1])
def test_a_length_too_short_loses_only_that_message(short):
    items = read(b"Content-Length: %d\r\n\r\n" % (len(BODY_A) - short) + BODY_A + message(B), "bytes")
    assert bodies(items) == [BODY_A[:-short], BODY_B]
    assert kinds(items) == ["junk"]  # the rest of the cut body


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Length: abc\r\n\r\n",
        b"Content-Length: -5\r\n\r\n",
        b"Content-Length: 5\r\nno header\r\n\r\n",
        b"Content-Length: 10\r\n",
    ],  # fmt: skip
)
def test_a_malformed_header_is_reported_and_the_next_message_read(header):
    items = read(header + BODY_A + message(B))
    assert bodies(items) == [BODY_B]
    assert kinds(items) == ["bad-header"]


def test_junk_between_messages_is_skipped_and_reported_once():
    items = read(message(A) + b"\x00\xffgarbage" * 1000 + b"\r\n" + message(B), "halves")
    assert bodies(items) == [BODY_A, BODY_B]
    assert kinds(items) == ["junk"] and "garbage" in items[1].detail


def test_whitespace_between_messages_is_no_junk():
    assert kinds(read(message(A) + b"\r\n\r\n  \n" + message(B))) == []


def test_megabytes_of_junk_keep_the_buffer_small():
    reader = FrameReader()
    for _ in range(200):
        reader.feed(b"no header here at all " * 3000)
        assert reader.buffered <= reader.max_header
    assert bodies(reader.feed(message(A))) == [BODY_A]


def test_a_stream_ending_inside_a_body_says_so():
    assert kinds(read(message(A)[:-3])) == ["junk"]
