"""Plain records of the workspace index: definitions, indexed files, skipped files, statistics.

`FileEntry` is immutable: an update replaces the whole entry, so a `pack` running on another
thread can keep using the entries it took without copying them. `to_row`/`from_row` give the
compact msgpack form used by the index cache (`cache.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Definition:
    """A function, class, method or type found by a tree-sitter query.

    Attributes:
        name: the simple name (``perimeter`` for ``Circle::perimeter``); namespaces and
            modules keep their dotted name, which C# ``using`` resolution needs.
        kind: function, method, class, interface, struct, enum, trait, impl, type, module,
            namespace or macro.
        line: 0-based line of the definition's first line.
        signature: the source text before the body (``def f(x: int) -> str:``).
    """

    name: str
    kind: str
    line: int
    signature: str


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """One imported module or path as written; `relative` when it is relative to the file."""

    spec: str
    relative: bool = False


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One indexed file. `digest` is the content hash that keys every derived cache.

    Attributes:
        rel: path relative to the workspace root, with ``/`` separators.
        language: `LanguageSpec.name`.
        size, mtime_ns: the stat the entry was built from (0 for editor buffers).
        digest: blake2b-128 of the UTF-8 text, hex.
        chars: length of the text in characters.
        lines: number of lines.
        definitions: in source order.
        imports: in source order, duplicates removed.
        summary: imports and signatures with bodies elided ("" for text-only languages).
        chunks: identifiers of each `chunk_lines`-line chunk, space-joined, for lexical ranking.
        from_buffer: built from an open editor buffer rather than the file on disk.
    """

    rel: str
    language: str
    size: int
    mtime_ns: int
    digest: str
    chars: int
    lines: int
    definitions: tuple[Definition, ...] = ()
    imports: tuple[ImportSpec, ...] = ()
    summary: str = ""
    chunks: tuple[str, ...] = ()
    from_buffer: bool = False

    def to_row(self) -> list:
        return [
            self.language, self.size, self.mtime_ns, self.digest, self.chars, self.lines,
            [[d.name, d.kind, d.line, d.signature] for d in self.definitions],
            [[i.spec, i.relative] for i in self.imports],
            self.summary, list(self.chunks),
        ]  # fmt: skip

    @classmethod
    def from_row(cls, rel: str, row: list) -> FileEntry:
        """The entry `to_row` wrote. Raises TypeError naming the part of the wrong type (a
        damaged cache must not become entries that fail later, far from the cause)."""
        language, size, mtime_ns, digest, chars, lines, defs, imports, summary, chunks = row
        _typed(rel, language=(language, str), size=(size, int), mtime_ns=(mtime_ns, int), digest=(digest, str),
               chars=(chars, int), lines=(lines, int), summary=(summary, str), chunks=(chunks, list))  # fmt: skip
        # plain `type() is` checks: a warm start reads tens of thousands of these
        if not all(len(d) == 4 and type(d[0]) is str and type(d[1]) is str and type(d[2]) is int
                   and type(d[3]) is str for d in defs):  # fmt: skip
            raise TypeError(f"{rel}: malformed definitions {str(defs)[:80]}")
        if not all(len(i) == 2 and type(i[0]) is str and type(i[1]) is bool for i in imports):
            raise TypeError(f"{rel}: malformed imports {str(imports)[:80]}")
        if not all(type(c) is str for c in chunks):
            raise TypeError(f"{rel}: malformed chunks")
        return cls(
            rel, language, size, mtime_ns, digest, chars, lines,
            tuple(Definition(*d) for d in defs), tuple(ImportSpec(*i) for i in imports),
            summary, tuple(chunks),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SkipRecord:
    """A file looked at and left out, remembered with its stat so a warm scan need not reread it.

    `reason` is one of: binary, too-large, secret-name, secret-content, generated, minified,
    invalid-utf8, unreadable, not-a-file, outside-root.
    """

    size: int
    mtime_ns: int
    reason: str

    @classmethod
    def from_row(cls, row: list) -> SkipRecord:
        size, mtime_ns, reason = row
        _typed("skip record", size=(size, int), mtime_ns=(mtime_ns, int), reason=(reason, str))
        return cls(size, mtime_ns, reason)


@dataclass
class IndexStats:
    """What `Workspace.scan`/`stats` report (and `deepfim index` prints).

    Attributes:
        files: indexed files.
        files_by_language: indexed files per language id.
        definitions: definitions over all files.
        definitions_by_language: definitions per language id.
        bytes: UTF-8 bytes of all indexed text.
        bytes_by_language: per language id.
        skipped: files left out after being looked at, per reason (ignored paths are not
            counted: they are never visited).
        imports: import edges that resolved to a workspace file.
        ready: a first scan has completed.
        scan_seconds: duration of the last scan.
        reused: files of the last scan taken from the cache without reading.
        parsed: files of the last scan read (and parsed when their content changed).
    """

    files: int = 0
    files_by_language: dict[str, int] = field(default_factory=dict)
    definitions: int = 0
    definitions_by_language: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    bytes_by_language: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    imports: int = 0
    ready: bool = False
    scan_seconds: float = 0.0
    reused: int = 0
    parsed: int = 0


def _typed(where: str, **fields: tuple[object, type]) -> None:
    """Raises TypeError for the first field whose value is not of its type."""
    for name, (value, kind) in fields.items():
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"{where}: {name} is {type(value).__name__}, expected {kind.__name__}")
