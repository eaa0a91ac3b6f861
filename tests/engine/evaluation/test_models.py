"""The copy baseline (engine/evaluation/models.py): `longest_copy`'s choice of match, never the
cursor file's own copy of the cursor position, and `prompt_texts`/`copy_completion` on a real
`BuiltPrompt` from a `Workspace` on disk."""

from __future__ import annotations

import dataclasses

import pytest

from deepfim.context.prompt_builder import ContextLevel, PromptSpec
from deepfim.context.workspace import Workspace
from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.evaluation.models import CONTEXT_KINDS, copy_completion, longest_copy, prompt_texts
from deepfim.engine.model.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")


def test_the_longest_match_wins_over_a_later_shorter_one():
    # "foo.bar(" recurs early; only "bar(" recurs later
    assert longest_copy("foo.bar(1)\nzbar(2)\nfoo.bar(", "", [], max_chars=2) == "1)"
    # a longer match in a context text beats a shorter one in the prefix
    assert longest_copy("Ay = f(1)\nC.y = f(", "", ["B.y = f(5)"], max_chars=2) == "5)"


def test_ties_go_to_the_latest_in_the_prefix_then_the_suffix_then_the_last_context_text():
    assert longest_copy("Ay = f(1)\nBy = f(2)\nCy = f(", "", [], max_chars=2) == "2)"
    assert longest_copy("Ay = f(1)\nCy = f(", "\nBy = f(3)\n", ["Dy = f(4)"], max_chars=2) == "1)"
    assert longest_copy("Cy = f(", "\nBy = f(3)\n", ["Dy = f(4)"], max_chars=2) == "3)"
    assert longest_copy("Cy = f(", "", ["Ay = f(7)", "By = f(8)"], max_chars=2) == "8)"


def test_no_copy_without_an_earlier_occurrence_of_min_match_characters():
    assert longest_copy("nothing repeats here", "", [], max_chars=20) == ""
    assert longest_copy("x = compute_total", "", [], max_chars=20) == ""  # the tail itself is no occurrence
    assert longest_copy("abc.abc", "", [], max_chars=5) == ""  # "abc" recurs: 3 < min_match
    assert longest_copy("abc.abc", "", [], max_chars=5, min_match=3) == ".abc"
    assert longest_copy("call(a, b)\ncall(", "", [], max_chars=4) == "a, b"  # max_chars bounds the copy


def test_the_cursor_files_own_copy_of_the_cursor_position_is_never_copied():
    prefix = "class Rect:\n    def area(self):\n        return "
    suffix = "self.w * self.h\n\n    def grow(self, k):\n        self.w *= k\n"
    own_copy = "rect.py" + prefix + suffix  # as the prompt shows it: what follows the cursor is the suffix
    assert longest_copy(prefix, suffix, [own_copy], max_chars=40) == ""
    other = "sq.py" + "class Square:\n    def area(self):\n        return self.side ** 2\n"
    assert longest_copy(prefix, suffix, [other, own_copy], max_chars=14) == "self.side ** 2"
    assert longest_copy(prefix, suffix, [own_copy, other], max_chars=14) == "self.side ** 2"


HELPER = "def connect(host, port):\n    return Connection(host=host, port=port, timeout=30)\n"
MAIN_PREFIX = "from helper import connect\n\n\ndef open_default(host, port):\n    return Connection(host=host, "
MAIN_SUFFIX = "\n\n\ndef close(conn):\n    conn.close()\n"


def _workspace(tmp_path, files: dict[str, str]) -> Workspace:
    root = tmp_path / "repo"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    ws = Workspace(root, cache_dir=tmp_path / "cache")
    ws.scan()
    return ws


def _spec(level: ContextLevel) -> PromptSpec:
    return dataclasses.replace(PromptSpec(), level=level)


def test_prompt_texts_reads_context_prefix_and_suffix_out_of_a_built_prompt(tmp_path, tok):
    ws = _workspace(tmp_path, {"helper.py": HELPER, "main.py": MAIN_PREFIX + MAIN_SUFFIX})
    main = ws.root / "main.py"
    built = ws.prompt(tok, _spec(ContextLevel.REPOSITORY), main, MAIN_PREFIX, MAIN_SUFFIX, "repo")
    context, prefix, suffix = prompt_texts(tok, built)
    assert len(context) == sum(s.kind in CONTEXT_KINDS for s in built.prompt.segments) >= 1
    assert any(HELPER in text for text in context)  # helper.py from the repository part
    assert prefix == MAIN_PREFIX and suffix == MAIN_SUFFIX  # the window holds this small file whole
    assert not any("<｜" in text for text in [*context, prefix, suffix])  # markers are not text
    # the copy baseline copies the call from helper.py, which only the repository level shows
    assert copy_completion(tok, built, 40).startswith("port=port, timeout=30)")
    alone = ws.prompt(tok, _spec(ContextLevel.NONE), main, MAIN_PREFIX, MAIN_SUFFIX, "repo")
    assert prompt_texts(tok, alone)[0] == []
    assert not copy_completion(tok, alone, 40).startswith("port=port")
    ws.close()


def test_copy_completion_does_not_copy_the_suffix_from_the_cursor_files_copy(tmp_path, tok):
    # a file too long for the window: the FILE level adds its copy (prefix + suffix) to the prompt
    lines = [f"value_{i} = {i * 7}\n" for i in range(120)]
    prefix = "".join(lines[:80]) + "total = combine_values("
    suffix = "value_3, value_4)\n" + "".join(lines[80:])
    ws = _workspace(tmp_path, {"calc.py": prefix + suffix})
    built = ws.prompt(tok, _spec(ContextLevel.FILE), ws.root / "calc.py", prefix, suffix, "repo")
    copies = [s for s in built.prompt.segments if s.kind == "cursor_copy"]
    assert copies and built.window.far_cut
    context, window_prefix, window_suffix = prompt_texts(tok, built)
    assert prefix.endswith(window_prefix) and suffix.startswith(window_suffix) and window_prefix != prefix
    assert any(prefix[-200:] + suffix[:200] in text for text in context)  # the copy shows the cursor position
    assert not copy_completion(tok, built, 40).startswith("value_3")
    ws.close()
