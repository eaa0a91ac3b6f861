"""Reading ahead (Workspace.read_ahead, run by the language server's warmer once a workspace is
warm): the files a newly opened file's evidence reads, and their similar-code line index, are
ready before its first prompt, beside the files opened lately first."""

from __future__ import annotations

from ctx_fixtures import write_tree

from deepfim.context import evidence

BODY = "def handle(request, session):\n    user = session.user_for(request)\n    return user.name\n"
REPO = {
    "alpha/one.py": BODY,
    "alpha/two.py": BODY.replace("handle", "serve"),
    "beta/three.py": BODY.replace("handle", "answer"),
    "beta/four.py": BODY.replace("handle", "reply"),
}


def test_the_files_beside_those_opened_come_first(tmp_path, make_workspace):
    ws = make_workspace(write_tree(tmp_path / "repo", REPO))
    assert ws.read_ahead_order() == ["alpha/one.py", "alpha/two.py", "beta/four.py", "beta/three.py"]
    ws.note_opened(ws.root / "beta/three.py")
    assert ws.read_ahead_order() == ["beta/four.py", "beta/three.py", "alpha/one.py", "alpha/two.py"]


def test_read_ahead_builds_the_line_index_the_evidence_searches(tmp_path, make_workspace):
    ws = make_workspace(write_tree(tmp_path / "repo", REPO))
    texts = [text for rel, text in sorted(REPO.items()) if rel.startswith("beta/")]
    assert not any(text in evidence._lines._cache for text in texts)
    ws.read_ahead(["beta/four.py", "beta/three.py", "gone/missing.py"])  # a file not indexed is passed over
    assert all(text in evidence._lines._cache for text in texts)
    assert REPO["alpha/two.py"] not in evidence._lines._cache
