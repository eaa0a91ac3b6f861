"""The on-disk index cache: reuse by size + mtime (+ content hash), versioning, corruption."""

from __future__ import annotations

import os

from ctx_fixtures import write_tree

from deepfim.context.cache import CACHE_VERSION
from deepfim.context.workspace import Workspace


def _repo(tmp_path):
    return write_tree(tmp_path / "repo", {f"m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(5)})


def test_a_second_workspace_reuses_the_cache_without_reading(tmp_path, cache_dir):
    root = _repo(tmp_path)
    cold = Workspace(root, cache_dir=cache_dir).scan()
    assert (cold.parsed, cold.reused) == (5, 0)
    warm = Workspace(root, cache_dir=cache_dir).scan()
    assert (warm.parsed, warm.reused, warm.files, warm.definitions) == (0, 5, 5, 5)
    index = next(cache_dir.rglob("index.msgpack"))
    assert f"context-v{CACHE_VERSION}" in index.parts[-3] and index.parent.name.startswith("repo-")


def test_a_touched_file_is_read_but_not_reparsed(tmp_path, cache_dir):
    root = _repo(tmp_path)
    ws = Workspace(root, cache_dir=cache_dir)
    ws.scan()
    before = ws.entry("m0.py")
    os.utime(root / "m0.py", ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
    stats = ws.scan()
    after = ws.entry("m0.py")
    assert stats.parsed == 1 and after.mtime_ns == before.mtime_ns + 10**9
    assert after.definitions is before.definitions  # same content hash: parse result kept


def test_changed_added_and_deleted_files(tmp_path, cache_dir):
    root = _repo(tmp_path)
    Workspace(root, cache_dir=cache_dir).scan()
    (root / "m1.py").write_text("def changed():\n    return 'new'\n")
    (root / "m2.py").unlink()
    (root / "new.py").write_text("class Fresh:\n    pass\n")
    ws = Workspace(root, cache_dir=cache_dir)
    stats = ws.scan()
    assert stats.parsed == 2 and stats.reused == 3
    assert ws.files() == ["m0.py", "m1.py", "m3.py", "m4.py", "new.py"]
    assert [d.name for d in ws.entry("m1.py").definitions] == ["changed"]


def test_a_corrupt_cache_is_ignored(tmp_path, cache_dir):
    root = _repo(tmp_path)
    Workspace(root, cache_dir=cache_dir).scan()
    next(cache_dir.rglob("index.msgpack")).write_bytes(b"\xc1 not msgpack")
    stats = Workspace(root, cache_dir=cache_dir).scan()
    assert (stats.parsed, stats.files) == (5, 5)


def test_settings_that_change_extraction_invalidate_the_cache(tmp_path, cache_dir):
    from deepfim.context.settings import ContextSettings

    root = _repo(tmp_path)
    Workspace(root, cache_dir=cache_dir).scan()
    stats = Workspace(root, cache_dir=cache_dir, settings=ContextSettings(chunk_lines=7)).scan()
    assert stats.parsed == 5
    # back to the default extraction: parsed again once; prompt settings never invalidate
    stats = Workspace(root, cache_dir=cache_dir, settings=ContextSettings(max_file_share=0.3)).scan()
    assert stats.parsed == 5
    stats = Workspace(root, cache_dir=cache_dir, settings=ContextSettings(max_file_share=0.9)).scan()
    assert stats.parsed == 0


def test_skipped_files_are_remembered(tmp_path, cache_dir):
    root = _repo(tmp_path)
    (root / "blob.py").write_bytes(b"\x00\x01binary")
    Workspace(root, cache_dir=cache_dir).scan()
    stats = Workspace(root, cache_dir=cache_dir).scan()
    assert stats.parsed == 0 and stats.skipped == {"binary": 1}


def test_token_ids_persist_per_tokenizer(tmp_path, cache_dir, tok):
    root = _repo(tmp_path)
    ws = Workspace(root, cache_dir=cache_dir)
    ws.scan()
    total = ws.prepare_tokens(tok)
    assert total == sum(len(tok.encode((root / f"m{i}.py").read_text())) for i in range(5))
    stores = list(cache_dir.rglob("tokens-*.msgpack"))
    assert len(stores) == 1
    again = Workspace(root, cache_dir=cache_dir)
    again.scan()
    store = again.token_store(tok)
    entry = again.entry("m3.py")
    assert list(store.get(entry.digest)) == tok.encode((root / "m3.py").read_text())


def test_distinct_roots_get_distinct_cache_directories(tmp_path, cache_dir):
    a = write_tree(tmp_path / "a" / "repo", {"x.py": "x = 1\n"})
    b = write_tree(tmp_path / "b" / "repo", {"y.py": "y = 1\n"})
    wa, wb = Workspace(a, cache_dir=cache_dir), Workspace(b, cache_dir=cache_dir)
    assert wa.cache.directory != wb.cache.directory
    wa.scan()
    wb.scan()
    assert Workspace(a, cache_dir=cache_dir).scan().reused == 1


def test_saved_lexical_postings_rank_like_freshly_built_ones(tmp_path, cache_dir, polyglot):
    from deepfim.context.lexical import identifiers

    cold = Workspace(polyglot, cache_dir=cache_dir)
    cold.scan()
    (polyglot / "py/app/extra.py").write_text("def slugify_all(texts):\n    return [slugify(t) for t in texts]\n")
    cold.scan()  # an incremental update after the first save
    warm = Workspace(polyglot, cache_dir=cache_dir)
    warm.scan()
    window = identifiers("def register(name):\n    user = make_user(slugify(name))\n    texts = display_name")
    index_cold, index_warm = cold._indexer.index, warm._indexer.index
    from deepfim.context.index import WorkspaceIndex

    assert WorkspaceIndex().load(*warm.cache.load(warm.settings.index_fingerprint())) is True  # restored, not rebuilt
    assert index_cold.lexical.similar(window, index_cold.entries, "") == index_warm.lexical.similar(
        window, index_warm.entries, ""
    )
    fresh = Workspace(polyglot, cache_dir=tmp_path / "fresh")
    fresh.scan()
    index_fresh = fresh._indexer.index
    assert index_fresh.lexical.similar(window, index_fresh.entries, "") == index_warm.lexical.similar(
        window, index_warm.entries, ""
    )
