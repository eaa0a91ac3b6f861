"""Which files are source code, in which language, and the tree-sitter grammar and query for each.

Grammars come from `tree-sitter-language-pack==0.13.0`, whose wheels bundle compiled
grammars (the 1.x pack downloads them at run time and fails offline). Queries are
tags-style `.scm` data files in `context/queries/`; see `extract.py` for the capture names.

Languages without a query (Markdown, TOML, shell, ...) are still indexed as plain text: they
can be packed whole but contribute no definitions or imports.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources

from tree_sitter import Language, Parser, Query


@dataclass(frozen=True)
class LanguageSpec:
    """One language: how files are recognised and how their summaries are written.

    Attributes:
        name: our language id (also the key in `IndexStats.files_by_language`).
        grammar: tree-sitter-language-pack name, or None for text-only languages.
        query: stem of the `.scm` file under `queries/` (several grammars may share one).
        extensions: file suffixes, lower case, with the dot.
        filenames: exact file names (e.g. ``Makefile``).
        member_sep: joins an imported module and a member (`from a import b` -> ``a.b``).
        leaf_elision: appended to a signature whose body is elided in a summary.
        block_open: appended to a container's header when its members follow.
        block_close: closes a container in a summary (None: indentation closes it).
    """

    name: str
    grammar: str | None
    query: str | None
    extensions: tuple[str, ...]
    filenames: tuple[str, ...] = ()
    member_sep: str = "."
    leaf_elision: str = " { ... }"
    block_open: str = " {"
    block_close: str | None = "}"

    @property
    def parsed(self) -> bool:
        return self.grammar is not None and self.query is not None


_BRACES = {"leaf_elision": " { ... }", "block_open": " {", "block_close": "}"}
_END = {"leaf_elision": " ... end", "block_open": "", "block_close": "end"}

LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec("python", "python", "python", (".py", ".pyi", ".pyw"),
                 leaf_elision=" ...", block_open="", block_close=None),
    LanguageSpec("javascript", "javascript", "javascript", (".js", ".mjs", ".cjs", ".jsx"), **_BRACES),
    LanguageSpec("typescript", "typescript", "typescript", (".ts", ".mts", ".cts"), **_BRACES),
    LanguageSpec("tsx", "tsx", "typescript", (".tsx",), **_BRACES),
    LanguageSpec("go", "go", "go", (".go",), **_BRACES),
    LanguageSpec("rust", "rust", "rust", (".rs",), member_sep="::", **_BRACES),
    LanguageSpec("java", "java", "java", (".java",), **_BRACES),
    LanguageSpec("c", "c", "c", (".c", ".h"), **_BRACES),
    LanguageSpec("cpp", "cpp", "cpp", (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp"),
                 member_sep="::", **_BRACES),
    LanguageSpec("csharp", "csharp", "csharp", (".cs",), **_BRACES),
    LanguageSpec("ruby", "ruby", "ruby", (".rb", ".rake", ".gemspec"), ("Rakefile", "Gemfile"), **_END),
    LanguageSpec("lua", "lua", "lua", (".lua",), **_END),
    # Text-only: packed as context, no definitions.
    LanguageSpec("markdown", None, None, (".md", ".markdown")),
    LanguageSpec("rst", None, None, (".rst",)),
    LanguageSpec("toml", None, None, (".toml",)),
    LanguageSpec("yaml", None, None, (".yaml", ".yml")),
    LanguageSpec("json", None, None, (".json", ".jsonc")),
    LanguageSpec("ini", None, None, (".ini", ".cfg")),
    LanguageSpec("shell", None, None, (".sh", ".bash", ".zsh", ".fish")),
    LanguageSpec("html", None, None, (".html", ".htm", ".vue", ".svelte")),
    LanguageSpec("css", None, None, (".css", ".scss", ".sass", ".less")),
    LanguageSpec("sql", None, None, (".sql",)),
    LanguageSpec("kotlin", None, None, (".kt", ".kts")),
    LanguageSpec("swift", None, None, (".swift",)),
    LanguageSpec("php", None, None, (".php",)),
    LanguageSpec("scala", None, None, (".scala",)),
    LanguageSpec("build", None, None, (".cmake", ".mk", ".gradle"),
                 ("Makefile", "GNUmakefile", "CMakeLists.txt", "Dockerfile", "BUILD", "BUILD.bazel")),
)  # fmt: skip

_BY_EXTENSION = {ext: spec for spec in LANGUAGES for ext in spec.extensions}
_BY_FILENAME = {name: spec for spec in LANGUAGES for name in spec.filenames}
_BY_NAME = {spec.name: spec for spec in LANGUAGES}
PARSED_LANGUAGES = tuple(spec.name for spec in LANGUAGES if spec.parsed)


def language_for(file_name: str) -> LanguageSpec | None:
    """The language of a file from its name, or None when we do not index that kind of file."""
    spec = _BY_FILENAME.get(file_name)
    if spec is not None:
        return spec
    dot = file_name.rfind(".")
    return _BY_EXTENSION.get(file_name[dot:].lower()) if dot >= 0 else None


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
