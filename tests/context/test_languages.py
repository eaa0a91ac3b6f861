"""The one language registry (context/languages.py): indexing, shaping and evaluation agree."""

import pytest

from deepfim.context import languages
from deepfim.context.languages import GENERIC, for_editor, language_for, parser, parser_or_none


@pytest.mark.parametrize(
    "language_id, path, want",
    [
        ("typescriptreact", None, "tsx"),
        ("javascriptreact", None, "javascript"),
        ("shellscript", None, "shell"),
        ("ruby", None, "ruby"),
        ("python", "x.ts", "python"),  # the client's id wins over the extension
        ("", "pkg/module.pyw", "python"),  # no filetype detection: the file name decides
        ("plaintext", "src/App.tsx", "tsx"),
        (None, "Makefile", "build"),
        ("cobol", "x.cbl", "plaintext"),
    ],
)
def test_editor_language_ids_and_file_names_map_to_one_spec(language_id, path, want):
    assert for_editor(language_id, path).name == want


def test_every_indexed_language_is_what_shaping_uses():
    for spec in languages.LANGUAGES:
        for ext in spec.extensions:
            assert language_for(f"f{ext}") is spec and for_editor("", f"f{ext}") is spec
    ruby = for_editor("ruby")
    assert ruby.line_comments == ("#",) and ruby is not GENERIC  # once shaped as generic text


def test_one_parser_per_thread_and_language_and_none_without_a_grammar():
    assert parser("python") is parser("python")
    assert parser_or_none(for_editor("typescriptreact")) is parser("tsx")
    assert parser_or_none(GENERIC) is None and parser_or_none(for_editor("markdown")) is None
    tree = parser_or_none(for_editor("shellscript")).parse(b"if true; then echo hi; fi\n")
    assert tree.root_node.type == "program" and not tree.root_node.has_error
