"""What the shaping rules need to know about a language: its tree-sitter grammar name,
comment and string syntax, and how blocks open (":" for Python, "{" for C-like).

Unknown languages get `GENERIC`: bracket and indentation rules still apply, without parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    grammar: str | None  # tree-sitter-language-pack name; None: no parser
    line_comments: tuple[str, ...] = ("//",)
    block_comment: tuple[str, str] | None = ("/*", "*/")
    quotes: tuple[str, ...] = ('"', "'")  # longest first where one is a prefix of another
    block_openers: tuple[str, ...] = ("{",)  # a line ending with one of these opens a block
    indent_defines_blocks: bool = False


_C_LIKE = {"block_comment": ("/*", "*/"), "line_comments": ("//",), "block_openers": ("{",)}

LANGUAGES: dict[str, LanguageSpec] = {
    spec.name: spec
    for spec in (
        LanguageSpec(
            "python",
            "python",
            line_comments=("#",),
            block_comment=None,
            quotes=('"""', "'''", '"', "'"),
            block_openers=(":",),
            indent_defines_blocks=True,
        ),
        LanguageSpec("javascript", "javascript", quotes=('"', "'", "`"), **_C_LIKE),
        LanguageSpec("typescript", "typescript", quotes=('"', "'", "`"), **_C_LIKE),
        LanguageSpec("typescriptreact", "tsx", quotes=('"', "'", "`"), **_C_LIKE),
        LanguageSpec("javascriptreact", "javascript", quotes=('"', "'", "`"), **_C_LIKE),
        LanguageSpec("go", "go", quotes=('"', "'", "`"), **_C_LIKE),
        LanguageSpec("rust", "rust", quotes=('"',), **_C_LIKE),
        LanguageSpec("c", "c", **_C_LIKE),
        LanguageSpec("cpp", "cpp", **_C_LIKE),
        LanguageSpec("java", "java", **_C_LIKE),
        LanguageSpec("csharp", "csharp", **_C_LIKE),
        LanguageSpec(
            "lua",
            "lua",
            line_comments=("--",),
            block_comment=None,
            block_openers=("then", "do", "function()"),
        ),
        LanguageSpec("shellscript", "bash", line_comments=("#",), block_comment=None, block_openers=("then", "do")),
    )
}

GENERIC = LanguageSpec("plaintext", None, line_comments=(), block_comment=None, block_openers=("{", ":"))

_EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascriptreact",
    ".ts": "typescript",
    ".mts": "typescript",
    ".tsx": "typescriptreact",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".java": "java",
    ".cs": "csharp",
    ".lua": "lua",
    ".sh": "shellscript",
    ".bash": "shellscript",
}


def language_for(language_id: str | None, path: str | PurePath | None = None) -> LanguageSpec:
    """The spec for an LSP languageId, else for the file extension, else `GENERIC`."""
    if language_id and language_id in LANGUAGES:
        return LANGUAGES[language_id]
    if path is not None:
        name = _EXTENSIONS.get(PurePath(path).suffix.lower())
        if name:
            return LANGUAGES[name]
    return GENERIC
