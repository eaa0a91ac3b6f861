"""The index kept live: editor buffers, the watchfiles thread, concurrent packs."""

from __future__ import annotations

import threading
import time

import pytest
from ctx_fixtures import prompt_of, write_tree

REPO = {
    "app/__init__.py": "",
    "app/main.py": "from app.util import helper\n\n\ndef run():\n    return helper()\n",
    "app/util.py": "def helper():\n    return 'disk'\n",
}


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def root(tmp_path):
    return write_tree(tmp_path / "repo", REPO)


def _packed_text(ws, tok, root, refresh=True):
    """The prompt at the end of app/main.py, the repository part refreshed first (the language
    server refreshes it in the background once edits settle)."""
    text = (root / "app/main.py").read_text()
    if refresh:
        ws.repository_part(tok, 8192, refresh=True)
    return tok.decode(prompt_of(ws, tok, root / "app/main.py", text, "", 8192).prompt.ids)


def test_buffer_text_wins_over_disk_until_closed(root, make_workspace, tok):
    ws = make_workspace(root)
    assert "'disk'" in _packed_text(ws, tok, root)
    ws.update_buffer(root / "app/util.py", "def helper():\n    return 'buffer'\n\n\ndef extra():\n    pass\n")
    assert "'disk'" in _packed_text(ws, tok, root, refresh=False)  # the served part stays until refreshed
    text = _packed_text(ws, tok, root)
    # an edited file leaves the shared part; its current text comes in as evidence
    assert "'buffer'" in text and "'disk'" not in text
    assert [d.name for d in ws.entry("app/util.py").definitions] == ["helper", "extra"]
    ws.scan()  # a rescan does not overwrite an open buffer with the disk text
    assert "'buffer'" in _packed_text(ws, tok, root)
    ws.update_buffer(root / "app/util.py", None)
    assert "'buffer'" not in _packed_text(ws, tok, root)


def test_an_unsaved_new_buffer_is_context_for_other_files(root, make_workspace, tok):
    ws = make_workspace(root)
    ws.update_buffer(root / "app/draft.py", "def drafted_function():\n    return 7\n")
    assert "drafted_function" in _packed_text(ws, tok, root)
    assert "app/draft.py" in ws.files()


def test_the_watcher_follows_created_changed_and_deleted_files(root, make_workspace):
    ws = make_workspace(root, watch_debounce_ms=50)
    ws.start_watching()
    assert ws.wait_until_watching()
    (root / "app/new.py").write_text("def created():\n    pass\n")
    assert _wait_for(lambda: ws.entry("app/new.py") is not None)
    (root / "app/new.py").write_text("def renamed():\n    pass\n")
    assert _wait_for(lambda: [d.name for d in ws.entry("app/new.py").definitions] == ["renamed"])
    (root / "app/new.py").unlink()
    assert _wait_for(lambda: ws.entry("app/new.py") is None)
    (root / ".env").write_text("TOKEN=abc\n")  # secret files stay out, watched or not
    (root / "node_modules").mkdir()
    (root / "node_modules/x.js").write_text("module.exports = 1\n")
    (root / ".gitignore").write_text("app/util.py\n")  # a rules change rescans
    assert _wait_for(lambda: ws.entry("app/util.py") is None)
    assert set(ws.files()) == {"app/__init__.py", "app/main.py"}
    ws.stop_watching()
    assert not ws.watching


def test_packs_run_while_buffers_and_files_change(root, make_workspace, tok):
    ws = make_workspace(root)
    errors, stop = [], threading.Event()

    def churn():
        i = 0
        while not stop.is_set() or i < 5:  # at least one round over the five generated files
            try:
                ws.update_buffer(root / "app/util.py", f"def helper():\n    return {i}\n")
                (root / f"app/gen_{i % 5}.py").write_text(f"def g{i}():\n    return {i}\n")
                ws.reindex(root / f"app/gen_{i % 5}.py")
                i += 1
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(40):
            result = prompt_of(ws, tok, root / "app/main.py", "from app.util import helper\n", "", 2048)
            assert len(result.prompt) <= 2048
    finally:
        stop.set()
        worker.join()
    assert not errors
    assert ws.stats().files == 8


def test_edits_and_opens_are_remembered_per_path(root, make_workspace, tok):
    ws = make_workspace(root)
    ws.update_buffer(root / "app/util.py", REPO["app/util.py"])  # opening: no edit
    assert ws.repository_part(tok, 8192, refresh=True).contains("app/util.py")
    ws.update_buffer(root / "app/util.py", REPO["app/util.py"] + "\n# typed\n")
    part = ws.repository_part(tok, 8192, refresh=True)
    assert not part.contains("app/util.py") and part.excluded == {"app/util.py"}


def test_packing_before_the_first_scan_uses_the_cursor_file_alone(root, make_workspace, tok):
    ws = make_workspace(root, scan=False)
    assert ws.stats().ready is False and ws.stats().files == 0
    result = prompt_of(ws, tok, root / "app/main.py", REPO["app/main.py"], "", 4096)
    assert result.repository.files == () and "def run" in tok.decode(result.prompt.ids)
    assert ws.scan().ready is True


def test_a_scan_pauses_before_each_file_it_reads(root, make_workspace):
    """`pause` runs before every file is read and parsed, and may hold the scan there (the
    language server holds it while a completion is in flight: lsp_server/scan_pacing.py)."""
    ws = make_workspace(root, scan=False)
    indexed_at_pause: list[int] = []
    ws.scan(pause=lambda: indexed_at_pause.append(ws.stats().files))
    assert indexed_at_pause == [0, 1, 2]  # one pause per file, each before that file is indexed
    assert ws.stats().files == 3
    again: list[int] = []
    ws.scan(pause=lambda: again.append(1))
    assert again == []  # nothing changed on disk: nothing to read, no pause
