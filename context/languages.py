"""The one language registry: which files are source code, in which language, the tree-sitter
grammar and tags query for each, and the syntax facts completion shaping needs.

Grammars come from `tree-sitter-language-pack==0.13.0`, whose wheels bundle compiled
grammars (the 1.x pack downloads them at run time and fails offline). Queries are
tags-style `.scm` data files in `context/queries/`; see `extract.py` for the capture names.
Indexing (`context/`), completion shaping (`lsp_server/shaping/`) and evaluation holes
(`engine/evaluation/`) all look languages up here and parse with `parser()`.

Languages without a query (Markdown, TOML, shell, ...) are still indexed as plain text: they
can be packed whole but contribute no definitions or imports.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import PurePath

from tree_sitter import Language, Parser, Query

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanguageSpec:
    """One language: how files are recognised, summarised and shaped.

    Attributes:
        name: our language id (also the key in `IndexStats.files_by_language`).
        grammar: tree-sitter-language-pack name, or None when nothing parses it.
        query: stem of the `.scm` file under `queries/` (several grammars may share one); None:
            indexed as text (no definitions), even when a grammar exists for shaping.
        extensions: file suffixes, lower case, with the dot.
        filenames: exact file names (e.g. ``Makefile``).
        lsp_ids: LSP `languageId`s of this language besides `name` (``typescriptreact``).
        member_sep: joins an imported module and a member (`from a import b` -> ``a.b``).
        leaf_elision: appended to a signature whose body is elided in a summary.
        block_open: appended to a container's header when its members follow.
        block_close: closes a container in a summary (None: indentation closes it).
        line_comments / block_comment / quotes: comment and string syntax (shaping's scanner);
            quotes longest first where one is a prefix of another.
        block_openers: a line ending with one of these opens a block (":" Python, "{" C-like).
        indent_defines_blocks: indentation, not brackets, closes blocks.
    """

    name: str
    grammar: str | None
    query: str | None
    extensions: tuple[str, ...]
    filenames: tuple[str, ...] = ()
    lsp_ids: tuple[str, ...] = ()
    member_sep: str = "."
    leaf_elision: str = " { ... }"
    block_open: str = " {"
    block_close: str | None = "}"
    line_comments: tuple[str, ...] = ()
    block_comment: tuple[str, str] | None = None
    quotes: tuple[str, ...] = ('"', "'")
    block_openers: tuple[str, ...] = ("{", ":")
    indent_defines_blocks: bool = False

    @property
    def parsed(self) -> bool:
        """Indexed with definitions and imports (a grammar and a tags query)."""
        return self.grammar is not None and self.query is not None


_BRACES = {"leaf_elision": " { ... }", "block_open": " {", "block_close": "}"}
_END = {"leaf_elision": " ... end", "block_open": "", "block_close": "end"}
_C_SYNTAX = {"line_comments": ("//",), "block_comment": ("/*", "*/"), "block_openers": ("{",)}
_JS_SYNTAX = {**_C_SYNTAX, "quotes": ('"', "'", "`")}
_HASH_COMMENTS = {"line_comments": ("#",)}

LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec("python", "python", "python", (".py", ".pyi", ".pyw"),
                 leaf_elision=" ...", block_open="", block_close=None, line_comments=("#",),
                 quotes=('"""', "'''", '"', "'"), block_openers=(":",), indent_defines_blocks=True),
    LanguageSpec("javascript", "javascript", "javascript", (".js", ".mjs", ".cjs", ".jsx"),
                 lsp_ids=("javascriptreact",), **_BRACES, **_JS_SYNTAX),
    LanguageSpec("typescript", "typescript", "typescript", (".ts", ".mts", ".cts"), **_BRACES, **_JS_SYNTAX),
    LanguageSpec("tsx", "tsx", "typescript", (".tsx",), lsp_ids=("typescriptreact",), **_BRACES, **_JS_SYNTAX),
    LanguageSpec("go", "go", "go", (".go",), **_BRACES, **{**_C_SYNTAX, "quotes": ('"', "'", "`")}),
    LanguageSpec("rust", "rust", "rust", (".rs",), member_sep="::", **_BRACES, **{**_C_SYNTAX, "quotes": ('"',)}),
    LanguageSpec("java", "java", "java", (".java",), **_BRACES, **_C_SYNTAX),
    LanguageSpec("c", "c", "c", (".c", ".h"), **_BRACES, **_C_SYNTAX),
    LanguageSpec("cpp", "cpp", "cpp", (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp"),
                 member_sep="::", **_BRACES, **_C_SYNTAX),
    LanguageSpec("csharp", "csharp", "csharp", (".cs",), **_BRACES, **_C_SYNTAX),
    LanguageSpec("ruby", "ruby", "ruby", (".rb", ".rake", ".gemspec"), ("Rakefile", "Gemfile"), **_END,
                 line_comments=("#",), block_comment=("=begin", "=end"), block_openers=("do", "then", "|")),
    LanguageSpec("lua", "lua", "lua", (".lua",), **_END, line_comments=("--",),
                 block_openers=("then", "do", "function()")),
    # Text-only: packed as context, no definitions (shell still parses for shaping).
    LanguageSpec("shell", "bash", None, (".sh", ".bash", ".zsh"), lsp_ids=("shellscript", "bash", "sh", "zsh"),
                 **_HASH_COMMENTS, block_openers=("then", "do")),
    LanguageSpec("markdown", None, None, (".md", ".markdown")),
    LanguageSpec("rst", None, None, (".rst",), lsp_ids=("restructuredtext",)),
    LanguageSpec("toml", None, None, (".toml",), **_HASH_COMMENTS),
    LanguageSpec("yaml", None, None, (".yaml", ".yml"), **_HASH_COMMENTS),
    LanguageSpec("json", None, None, (".json", ".jsonc"), lsp_ids=("jsonc",)),
    LanguageSpec("ini", None, None, (".ini", ".cfg"), line_comments=(";", "#")),
    LanguageSpec("fish", None, None, (".fish",), **_HASH_COMMENTS),
    LanguageSpec("html", None, None, (".html", ".htm", ".vue", ".svelte"), lsp_ids=("vue", "svelte")),
    LanguageSpec("css", None, None, (".css", ".scss", ".sass", ".less"), lsp_ids=("scss", "sass", "less"),
                 block_comment=("/*", "*/"), block_openers=("{",)),
    LanguageSpec("sql", None, None, (".sql",), line_comments=("--",), block_comment=("/*", "*/")),
    LanguageSpec("kotlin", None, None, (".kt", ".kts"), **_C_SYNTAX),
    LanguageSpec("swift", None, None, (".swift",), **_C_SYNTAX),
    LanguageSpec("php", None, None, (".php",), line_comments=("//", "#"), block_comment=("/*", "*/"),
                 block_openers=("{",)),
    LanguageSpec("scala", None, None, (".scala",), **_C_SYNTAX),
    LanguageSpec("build", None, None, (".cmake", ".mk", ".gradle"),
                 ("Makefile", "GNUmakefile", "CMakeLists.txt", "Dockerfile", "BUILD", "BUILD.bazel"),
                 lsp_ids=("makefile", "dockerfile", "cmake"), **_HASH_COMMENTS),
)  # fmt: skip

GENERIC = LanguageSpec("plaintext", None, None, ())
"""What shaping uses for a language it does not know: bracket and indentation rules, no parsing."""

_BY_EXTENSION = {ext: spec for spec in LANGUAGES for ext in spec.extensions}
_BY_FILENAME = {name: spec for spec in LANGUAGES for name in spec.filenames}
_BY_NAME = {spec.name: spec for spec in LANGUAGES}
_BY_LSP_ID = {**{i: spec for spec in LANGUAGES for i in spec.lsp_ids}, **_BY_NAME}
PARSED_LANGUAGES = tuple(spec.name for spec in LANGUAGES if spec.parsed)


def language_for(file_name: str) -> LanguageSpec | None:
    """The language of a file from its name, or None when we do not index that kind of file."""
    spec = _BY_FILENAME.get(file_name)
    if spec is not None:
        return spec
    dot = file_name.rfind(".")
    return _BY_EXTENSION.get(file_name[dot:].lower()) if dot >= 0 else None


def for_editor(language_id: str | None, path: str | PurePath | None = None) -> LanguageSpec:
    """The language of an editor buffer: its LSP languageId, else its file name (a client with
    no filetype detection sends "" or "plaintext"), else `GENERIC`."""
    spec = _BY_LSP_ID.get(language_id or "")
    if spec is None and path is not None:
        spec = language_for(PurePath(path).name)
    return spec or GENERIC


def spec_named(name: str) -> LanguageSpec:
    """The spec for a language id; ValueError names unknown ids."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown language {name!r}; known: {sorted(_BY_NAME)}") from None


@cache
def grammar(spec_name: str) -> Language:
    from tree_sitter_language_pack import get_language

    spec = spec_named(spec_name)
    if spec.grammar is None:
        raise ValueError(f"language {spec_name!r} is indexed as text and has no grammar")
    return get_language(spec.grammar)


@cache
def query(spec_name: str) -> Query:
    """The compiled tags query of a language (compiled once per process; queries are immutable)."""
    spec = spec_named(spec_name)
    source = resources.files("deepfim.context.queries").joinpath(f"{spec.query}.scm").read_text("utf-8")
    return Query(grammar(spec_name), source)


_local = threading.local()


def parser(spec_name: str) -> Parser:
    """A parser for the language, one per thread (tree-sitter parsers are not thread-safe)."""
    parsers = _local.__dict__.setdefault("parsers", {})
    found = parsers.get(spec_name)
    if found is None:
        found = parsers[spec_name] = Parser(grammar(spec_name))
    return found


def parser_or_none(spec: LanguageSpec) -> Parser | None:
    """`parser` for languages that have a grammar; None (logged once) where none loads, so a
    missing grammar costs syntax checks, never a completion."""
    if spec.grammar is None:
        return None
    try:
        return parser(spec.name)
    except Exception as exc:
        if spec.name not in _missing:
            _missing.add(spec.name)
            log.warning("no tree-sitter parser for %s: %s", spec.name, exc)
        return None


_missing: set[str] = set()
