"""Incremental document sync against the LSP position rules."""

from lsprotocol import types

from deepfim.lsp_server.documents import Document, DocumentStore
from deepfim.lsp_server.positions import UTF8


def _edit(line, char, end_line, end_char, text):
    return types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(line, char), types.Position(end_line, end_char)), text=text
    )


def test_incremental_edits_after_emoji_use_utf16_columns():
    doc = Document(uri="file:///tmp/a.py", text="s = '😀'\nx = 1\n")
    # insert after the closing quote: column 8 in UTF-16 ('😀' counts 2)
    doc.apply_change(_edit(0, 8, 0, 8, "  # smile"))
    assert doc.text.splitlines()[0] == "s = '😀'  # smile"
    doc.apply_change(_edit(1, 4, 1, 5, "42"))
    assert doc.text == "s = '😀'  # smile\nx = 42\n"
    assert doc.position_at(doc.text.index("42")) == types.Position(1, 4)


def test_utf8_encoding_counts_bytes():
    doc = Document(uri="file:///tmp/a.py", text="漢字x\n")
    doc.apply_change(_edit(0, 6, 0, 7, "y"), UTF8)
    assert doc.text == "漢字y\n"


def test_full_change_and_multi_line_replace_with_crlf():
    doc = Document(uri="file:///tmp/a.py", text="a\r\nb\r\nc")
    doc.apply_change(_edit(0, 1, 2, 0, "X\r\nY\r\n"))
    assert doc.text == "aX\r\nY\r\nc"
    assert doc.offset_at(types.Position(2, 1)) == len(doc.text)
    doc.apply_change(types.TextDocumentContentChangeWholeDocument(text="new"))
    assert doc.text == "new" and doc.index.line_count == 1


def test_store_ignores_changes_to_unknown_documents():
    store = DocumentStore()
    params = types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri="file:///nope.py", version=2),
        content_changes=[_edit(0, 0, 0, 0, "x")],
    )
    assert store.change(params) is None
    store.open(types.TextDocumentItem(uri="file:///a.py", language_id="python", version=1, text=""))
    params.text_document.uri = "file:///a.py"
    doc = store.change(params)
    assert doc is not None and doc.text == "x" and doc.version == 2
    assert doc.path is not None and doc.path.name == "a.py"


def _store():
    problems = []
    return DocumentStore(max_bytes=100, on_problem=lambda kind, message: problems.append((kind, message))), problems


def test_lone_surrogates_become_one_replacement_character_each_keeping_positions():
    store, problems = _store()
    store.open(types.TextDocumentItem(uri="file:///s.py", language_id="python", version=1, text="a\ud800b😀\udc00\n"))
    doc = store.get("file:///s.py")
    assert doc.text == "a\ufffdb😀\ufffd\n"  # the valid pair stays; each lone half is one U+FFFD
    assert doc.offset_at(types.Position(0, 5)) == 4  # 1 UTF-16 unit each, as the client counted
    doc_text = doc.text.encode("utf-8")  # encodable now: nothing downstream can fail on it
    assert doc_text.count("\ufffd".encode()) == 2
    assert problems == [("text", "s.py: 2 lone UTF-16 surrogate(s) replaced by U+FFFD")]


def test_a_buffer_over_the_limit_is_kept_in_sync_but_hidden_until_it_shrinks():
    store, problems = _store()
    store.open(types.TextDocumentItem(uri="file:///big.py", language_id="python", version=1, text="x" * 150))
    assert store.get("file:///big.py") is None and list(store) == [] and len(store) == 1
    assert problems[0][0] == "large-document" and "big.py" in problems[0][1]
    params = types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri="file:///big.py", version=2),
        content_changes=[_edit(0, 0, 0, 100, "")],
    )
    store.change(params)
    assert store.get("file:///big.py").text == "x" * 50 and len(problems) == 1
    params.content_changes = [_edit(0, 0, 0, 0, "é" * 30)]  # 60 bytes in UTF-8: over again
    store.change(params)
    assert store.get("file:///big.py") is None and len(problems) == 2
