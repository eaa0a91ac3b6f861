"""Turns one file's text into a `FileEntry`: definitions, imports, summary, lexical chunks.

Definitions and imports come from the language's tags query (`queries/*.scm`, capture
names documented in `queries/__init__.py`). A definition is kept when it is top-level or a
member of a container (class, interface, struct, trait, impl, module, namespace); functions
nested in functions are local detail and dropped. A function directly inside a class-like
container becomes a ``method``.

The summary is what the packer shows for a file that does not fit whole: its import lines,
then every kept definition's signature with bodies elided (``def f(x): ...``,
``int f(int x) { ... }``), containers opening and closing around their members. Small
data shapes (structs, enums, interfaces, type aliases of at most `SHAPE_LINES` lines) are
kept verbatim: their fields are what the model needs.
"""

from __future__ import annotations

import hashlib
import re

from tree_sitter import QueryCursor

from deepfim.context import languages
from deepfim.context.lexical import chunk_identifiers
from deepfim.context.records import Definition, FileEntry, ImportSpec
from deepfim.context.trees import TreeCache, reparse

CONTAINERS = frozenset({"class", "interface", "struct", "trait", "impl", "module", "namespace"})
CLASS_LIKE = frozenset({"class", "interface", "struct", "trait", "impl"})
SHAPES = frozenset({"struct", "enum", "type", "interface"})
SHAPE_LINES = 12
MAX_SIGNATURE_LINES = 8
MAX_IMPORT_LINES = 6
_NAME_SPLIT = re.compile(r"[.:]+|->")


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class _Def:
    __slots__ = ("node", "name", "kind", "body", "parent", "members", "kept")

    def __init__(self, node, name, kind, body):
        self.node, self.name, self.kind, self.body = node, name, kind, body
        self.parent: _Def | None = None
        self.members = 0
        self.kept = False


def _line_start(data: bytes, offset: int) -> int:
    return data.rfind(b"\n", 0, offset) + 1


def _lines_of(data: bytes, start: int, end: int, limit: int) -> str:
    """Source from `start` to `end`, at most `limit` lines.

    Starts at the beginning of the line when only indentation and modifiers precede
    `start` there (``export``, ``pub``, ``static``), so they stay in the signature.
    """
    line_start = _line_start(data, start)
    if not any(c in data[line_start:start] for c in b"{};()=,"):
        start = line_start
    text = data[start:end].decode("utf-8", "replace").rstrip()
    lines = text.split("\n")
    return "\n".join(lines[:limit]) + (" ..." if len(lines) > limit else "")


def _collect(spec: languages.LanguageSpec, data: bytes, root) -> tuple[list[_Def], list, list[ImportSpec]]:
    defs: dict[tuple[int, int, str], _Def] = {}
    imports: dict[int, tuple] = {}  # statement start -> (node, sources, names, relatives)
    for _, caps in QueryCursor(languages.query(spec.name)).matches(root):
        if "import" in caps:
            node = caps["import"][0]
            _, sources, names, relatives = imports.setdefault(node.start_byte, (node, [], [], []))
            sources += [n.text.decode("utf-8", "replace") for n in caps.get("import.source", ())]
            names += [n.text.decode("utf-8", "replace") for n in caps.get("import.name", ())]
            relatives += [n.text.decode("utf-8", "replace") for n in caps.get("import.relative", ())]
            continue
        kind = next((k[11:] for k in caps if k.startswith("definition.")), None)
        if kind is None or "name" not in caps:
            continue
        node = caps["definition." + kind][0]
        name = caps["name"][0].text.decode("utf-8", "replace")
        body = caps["body"][0] if "body" in caps else None
        key = (node.start_byte, node.end_byte, name)
        if key not in defs or (body is not None and defs[key].body is None):
            defs[key] = _Def(node, name, kind, body)
    ordered = sorted(defs.values(), key=lambda d: (d.node.start_byte, -d.node.end_byte))
    specs: list[ImportSpec] = []
    import_nodes = []
    for _, (node, sources, names, relatives) in sorted(imports.items()):
        import_nodes.append(node)
        for source in sources:
            source = source.strip("\"'`<>")
            specs.append(ImportSpec(source))
            for name in names:
                joiner = "" if source.endswith(".") else spec.member_sep
                specs.append(ImportSpec(source + joiner + name))
        specs += [ImportSpec(r.strip("\"'`<>"), True) for r in relatives]
    return ordered, import_nodes, list(dict.fromkeys(specs))


def _nest(ordered: list[_Def]) -> list[_Def]:
    """Sets parents and keeps top-level definitions and members of containers."""
    stack: list[_Def] = []
    kept = []
    for d in ordered:
        while stack and d.node.start_byte >= stack[-1].node.end_byte:
            stack.pop()
        d.parent = stack[-1] if stack else None
        stack.append(d)
        if d.parent is None:
            d.kept = True
        elif d.parent.kept and d.parent.kind in CONTAINERS:
            d.kept = True
            d.parent.members += 1
            if d.kind == "function" and d.parent.kind in CLASS_LIKE:
                d.kind = "method"
        if d.kept:
            kept.append(d)
    return kept


def _simple_name(name: str, kind: str) -> str:
    if kind in ("namespace", "module"):
        return name
    parts = [p for p in _NAME_SPLIT.split(name) if p]
    return parts[-1] if parts else name


def _signature(d: _Def, data: bytes) -> str:
    if d.body is not None:
        return _lines_of(data, d.node.start_byte, d.body.start_byte, MAX_SIGNATURE_LINES)
    return _lines_of(data, d.node.start_byte, d.node.end_byte, 1)


def _summary(spec, data: bytes, kept: list[_Def], import_nodes: list) -> str:
    out = [_lines_of(data, n.start_byte, n.end_byte, MAX_IMPORT_LINES) for n in import_nodes]
    out = list(dict.fromkeys(out))
    if out and kept:
        out.append("")
    open_blocks: list[tuple[int, str]] = []  # (end byte, indentation) of containers shown open
    verbatim_end = -1
    for d in kept:
        start, end = d.node.start_byte, d.node.end_byte
        while open_blocks and start >= open_blocks[-1][0]:
            _, indent = open_blocks.pop()
            if spec.block_close:
                out.append(indent + spec.block_close)
        if start < verbatim_end:
            continue
        line_start = _line_start(data, start)
        indent = data[line_start:start].decode("utf-8", "replace")
        indent = indent if not indent.strip() else ""
        span_lines = data.count(b"\n", start, end) + 1
        if d.kind in SHAPES and span_lines <= SHAPE_LINES:
            out.append(_lines_of(data, start, end, SHAPE_LINES))
            verbatim_end = end
        elif d.body is None:
            out.append(_lines_of(data, start, end, 1))
        elif d.members and d.kind in CONTAINERS:
            out.append(_signature(d, data) + spec.block_open)
            open_blocks.append((end, indent))
        else:
            out.append(_signature(d, data) + spec.leaf_elision)
    while open_blocks:
        _, indent = open_blocks.pop()
        if spec.block_close:
            out.append(indent + spec.block_close)
    return "\n".join(out) + "\n" if out else ""


def extract(
    rel: str,
    language: str,
    text: str,
    size: int,
    mtime_ns: int,
    chunk_lines: int,
    from_buffer: bool = False,
    text_digest: str | None = None,
    trees: TreeCache | None = None,
) -> FileEntry:
    """Parses `text` and returns its index entry (text-only languages get no definitions).

    `text_digest` is `digest(text)` when the caller already computed it; with `trees`, the
    file's previous tree (if cached) is reused and the new one cached.
    """
    spec = languages.spec_named(language)
    entry_args = dict(
        rel=rel, language=language, size=size, mtime_ns=mtime_ns, digest=text_digest or digest(text), chars=len(text),
        lines=text.count("\n") + 1, chunks=chunk_identifiers(text, chunk_lines), from_buffer=from_buffer,
    )  # fmt: skip
    if not spec.parsed:
        return FileEntry(**entry_args)
    data = text.encode("utf-8", "surrogatepass")
    parser = languages.parser(language)
    previous = trees.take(rel, language) if trees is not None else None
    tree = reparse(parser, previous[0], previous[1], data) if previous else parser.parse(data)
    if trees is not None:
        trees.put(rel, language, data, tree)
    ordered, import_nodes, imports = _collect(spec, data, tree.root_node)
    kept = _nest(ordered)
    definitions = tuple(
        Definition(_simple_name(d.name, d.kind), d.kind, d.node.start_point[0], _signature(d, data).strip())
        for d in kept
    )
    return FileEntry(
        **entry_args, definitions=definitions, imports=tuple(imports), summary=_summary(spec, data, kept, import_nodes)
    )
