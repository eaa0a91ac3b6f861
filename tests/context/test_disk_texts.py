"""The redacted texts of files on disk kept between prompts (context/disk_texts.py): served while
a file's stat is unchanged, read again after any write, secrets redacted, memory bounded."""

from __future__ import annotations

import os
import time

from ctx_fixtures import write_tree

from deepfim.context import discovery
from deepfim.context.disk_texts import DiskTexts, signature

REPO = {
    "app/__init__.py": "",
    "app/main.py": "from app.util import helper\n\n\ndef run():\n    return helper()\n",
    "app/util.py": "def helper():\n    return 'one'\n",
}


def _quiet_indexer(ws, racy_s: float = 0.05):
    """The workspace's indexer with a short racy window, so files just written can be kept."""
    ix = ws._indexer
    ix._disk_texts = DiskTexts(racy_s=racy_s)
    return ix


def test_an_unchanged_file_is_read_once(tmp_path, make_workspace, monkeypatch):
    root = write_tree(tmp_path / "repo", REPO)
    ws = make_workspace(root)
    ix = _quiet_indexer(ws)
    time.sleep(0.1)  # past the racy window of the files just written
    reads = []
    real = discovery.read_text
    monkeypatch.setattr(discovery, "read_text", lambda path, limit: reads.append(path.name) or real(path, limit))
    entry = ix.index.entries["app/util.py"]
    assert [ix.text_of(entry, {}) for _ in range(3)] == ["def helper():\n    return 'one'\n"] * 3
    assert reads == ["util.py"]


def test_a_file_the_scan_read_is_not_read_again(tmp_path, make_workspace, monkeypatch):
    """The scan keeps the text it indexed: a newly opened file's evidence then reads no file."""
    root = write_tree(tmp_path / "repo", REPO)
    ws = make_workspace(root, scan=False)
    ix = _quiet_indexer(ws)
    time.sleep(0.1)
    ws.scan()
    reads = []
    real = discovery.read_text
    monkeypatch.setattr(discovery, "read_text", lambda path, limit: reads.append(path.name) or real(path, limit))
    assert ix.text_of(ix.index.entries["app/main.py"], {}).startswith("from app.util import helper")
    assert ix.text_of(ix.index.entries["app/util.py"], {}) == "def helper():\n    return 'one'\n"
    assert reads == []


def test_a_rewrite_keeping_size_and_mtime_is_read_again(tmp_path, make_workspace):
    root = write_tree(tmp_path / "repo", REPO)
    ws = make_workspace(root)
    ix = _quiet_indexer(ws)
    time.sleep(0.1)
    path = root / "app/util.py"
    entry = ix.index.entries["app/util.py"]
    assert "'one'" in ix.text_of(entry, {})
    before = os.stat(path)
    path.write_text("def helper():\n    return 'two'\n")  # the same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime: only ctime moved
    assert ix.text_of(entry, {}) is None  # not what was indexed: left out, re-indexed next time
    ix.reindex_changed()
    assert "'two'" in ix.text_of(ix.index.entries["app/util.py"], {})


def test_a_file_written_just_now_is_not_kept(tmp_path):
    path = tmp_path / "a.py"
    path.write_text("x = 1\n")
    texts = DiskTexts(racy_s=60)
    texts.put("a.py", signature(path), "d", "x = 1\n")
    assert texts.get("a.py", signature(path), "d") is None


def test_the_budget_drops_the_least_recently_used(tmp_path):
    texts = DiskTexts(budget_chars=10, racy_s=0)
    stat = (1, 1, 1, 1)
    texts.put("a", stat, "da", "aaaa")
    texts.put("b", stat, "db", "bbbb")
    assert texts.get("a", stat, "da") == "aaaa"  # a is the most recent now
    texts.put("c", stat, "dc", "cccc")
    assert texts.get("b", stat, "db") is None
    assert texts.get("a", stat, "da") == "aaaa" and texts.get("c", stat, "dc") == "cccc"
    assert texts.get("a", stat, "other digest") is None and texts.get("a", (2, 1, 1, 1), "da") is None


def test_secrets_are_held_redacted(tmp_path, make_workspace):
    secret = "AKIA" + "QWERTYUIOPASDFGH"
    root = write_tree(tmp_path / "repo", {**REPO, "app/conf.py": f"KEY = '{secret}'\n\n\ndef key():\n    return KEY\n"})
    ws = make_workspace(root)
    ix = _quiet_indexer(ws)
    time.sleep(0.1)
    text = ix.text_of(ix.index.entries["app/conf.py"], {})
    assert secret not in text
    assert all(secret not in kept for _, _, kept in ix._disk_texts._texts.values())
