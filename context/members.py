"""What a class or module offers after a dot: members found with tree-sitter.

For a class: its methods (with signatures), the fields declared in its body (annotated or
assigned names, TypeScript fields) and, in Python, the attributes its methods assign to
``self``. For a module: its top-level functions, classes and assigned names. These feed the
"members" evidence placed next to the cursor and the names index-aware decoding allows
after ``receiver.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

from tree_sitter import Node, Query, QueryCursor

from deepfim.context.languages import for_editor, grammar, parser_or_none
from deepfim.context.trees import TreeCache, reparse

SELF_ATTRIBUTE = re.compile(r"\bself\.([A-Za-z_]\w*)\s*(?::[^=\n]*)?=(?!=)")
MAX_MEMBERS = 64


@dataclass(frozen=True)
class Member:
    name: str
    line: str  # how it reads in the evidence ("def total(self) -> Decimal", "items: list[LineItem]")


@dataclass(frozen=True)
class Scope:
    """A class or module and what it offers."""

    name: str  # "class Cart" / "module shop.pricing"
    header: str  # the first line shown ("class Cart(Base):")
    members: tuple[Member, ...]  # the first MAX_MEMBERS, for the evidence
    every_name: tuple[str, ...] = ()  # all of them
    complete: bool = True  # False: base classes add members this scope does not list

    def names(self) -> tuple[str, ...]:
        return self.every_name or tuple(m.name for m in self.members)

    def render(self, indent: str = "    ") -> str:
        lines = [self.header] + [indent + m.line for m in self.members]
        return "\n".join(lines) + "\n"


def _text(node: Node, data: bytes) -> str:
    return data[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _signature(node: Node, data: bytes) -> str:
    body = node.child_by_field_name("body")
    end = body.start_byte if body is not None else node.end_byte
    return " ".join(data[node.start_byte : end].decode("utf-8", "replace").split()).rstrip(":{ ")


def _assignment(node: Node) -> Node | None:
    """The assignment a statement is (grammars differ on wrapping it in an expression_statement)."""
    if node.type == "assignment":
        return node
    if node.type == "expression_statement" and node.named_children and node.named_children[0].type == "assignment":
        return node.named_children[0]
    return None


def _python_class_members(cls: Node, data: bytes) -> list[Member]:
    out: dict[str, Member] = {}
    body = cls.child_by_field_name("body")
    for child in body.named_children if body is not None else ():
        node = child.children[-1] if child.type == "decorated_definition" and child.children else child
        if node.type == "function_definition":
            name = node.child_by_field_name("name")
            if name is not None:
                out.setdefault(_text(name, data), Member(_text(name, data), _signature(node, data)))
        elif _assignment(child) is not None:
            stmt = _assignment(child)
            if stmt is not None:
                left = stmt.child_by_field_name("left")
                if left is not None and left.type == "identifier":
                    line = " ".join(_text(stmt, data).split("\n", 1)[0].split())
                    out.setdefault(_text(left, data), Member(_text(left, data), line[:80]))
    for match in SELF_ATTRIBUTE.finditer(_text(cls, data)):
        out.setdefault(match.group(1), Member(match.group(1), f"self.{match.group(1)}"))
    return list(out.values())


def _ts_class_members(cls: Node, data: bytes) -> list[Member]:
    out: dict[str, Member] = {}
    body = cls.child_by_field_name("body")
    for child in body.named_children if body is not None else ():
        name = child.child_by_field_name("name") or child.child_by_field_name("property")
        if name is not None and child.type in ("method_definition", "public_field_definition", "field_definition"):
            key = _text(name, data)
            out.setdefault(key, Member(key, _signature(child, data) if "method" in child.type else key))
    return list(out.values())


# the class nodes of each grammar members.py reads
_CLASS_PATTERNS = {
    "python": "(class_definition) @class",
    "javascript": "[(class_declaration) (class)] @class",
    "typescript": "[(class_declaration) (class)] @class",
    "tsx": "[(class_declaration) (class)] @class",
}


@cache
def _class_query(language: str) -> Query:
    return Query(grammar(language), _CLASS_PATTERNS[language])


def _classes(root: Node, language: str) -> list[Node]:
    """The file's classes, nested ones included, in source order (a query: tree-sitter walks
    the tree in C, where a walk in Python made a node object of every node)."""
    found = QueryCursor(_class_query(language)).captures(root).get("class", [])
    return sorted(found, key=lambda node: node.start_byte)


OPEN_BASES = frozenset({"object", "ABC", "Protocol", "Generic", "NamedTuple", "TypedDict", "Exception"})


def _inherits(cls: Node, data: bytes, language: str) -> bool:
    """Whether base classes may add members (`object`, `ABC`, `Protocol`... add none we miss)."""
    if language != "python":
        return any(c.type == "class_heritage" for c in cls.children)
    bases = cls.child_by_field_name("superclasses")
    if bases is None:
        return False
    for arg in bases.named_children:
        if arg.type == "keyword_argument":
            continue  # metaclass=...
        head = _text(arg, data).split("[", 1)[0].rsplit(".", 1)[-1]
        if head not in OPEN_BASES:
            return True
    return False


def _class_scope(cls: Node, data: bytes, language: str) -> Scope:
    name = cls.child_by_field_name("name")
    header = _signature(cls, data) + (":" if language == "python" else " {")
    members = _python_class_members(cls, data) if language == "python" else _ts_class_members(cls, data)
    every = tuple(m.name for m in members)
    label = f"class {_text(name, data) if name else '?'}"
    return Scope(label, header, tuple(members[:MAX_MEMBERS]), every, not _inherits(cls, data, language))


# the cursor files' last trees: a keystroke's text parses incrementally from the text before it
# (a whole-file parse per key was a third of a keystroke's prompt on a 2-core machine)
_last_trees = TreeCache(capacity=4)


@lru_cache(maxsize=4)
def _parse(text: str, path: str):
    """(root, bytes, language) of the cursor file's text; the last few kept (trees are read-only
    here): one request asks for its enclosing class, imports and named classes, each of which
    parsed the whole file again."""
    spec = for_editor("", path)
    parser = parser_or_none(spec)
    if parser is None or spec.name not in ("python", "javascript", "typescript", "tsx"):
        return None, None, spec.name
    data = text.encode("utf-8", "surrogatepass")
    last = _last_trees.take(path, spec.name)
    # `reparse` edits the tree it is given: a copy, so roots handed out from it stay as they were
    tree = parser.parse(data) if last is None else reparse(parser, last[0], last[1].copy(), data)
    _last_trees.put(path, spec.name, data, tree)
    return tree.root_node, data, spec.name


def enclosing_class(text: str, path: str, line: int) -> Scope | None:
    """The innermost class around 0-based `line` of `text` (the receiver of ``self.``)."""
    root, data, language = _parse(text, path)
    if root is None:
        return None
    classes = _classes(root, language)
    around = [c for c in classes if c.start_point[0] <= line <= max(c.end_point[0], c.start_point[0])]
    if not around:  # the cursor may sit past the parsed end of a class being written
        around = [c for c in classes if c.start_point[0] <= line and c.start_point[1] == 0]
    if not around:
        return None
    return _class_scope(max(around, key=lambda c: c.start_byte), data, language)


def named_class(text: str, path: str, name: str) -> Scope | None:
    return _class_scopes(text, path).get(name)


@lru_cache(maxsize=256)
def _class_scopes(text: str, path: str) -> dict[str, Scope]:
    """Every class of a file by name (the first found, if a name repeats). Cached by content:
    the receivers at a cursor resolve to classes of the same few files again and again, and
    parsing and walking a whole file each time was most of a new file's context."""
    root, data, language = _parse(text, path)
    found: dict[str, Scope] = {}
    for cls in _classes(root, language) if root is not None else ():
        node = cls.child_by_field_name("name")
        if node is not None:
            key = _text(node, data)
            if key not in found:
                found[key] = _class_scope(cls, data, language)
    return found


def _imported_names(root: Node, data: bytes) -> set[str]:
    """The names a Python module's top-level imports bind ("*" for a star import)."""
    out: set[str] = set()
    for node in root.named_children:
        if node.type not in ("import_statement", "import_from_statement"):
            continue
        names = node.children_by_field_name("name")
        for name in names:
            if name.type == "aliased_import":
                alias = name.child_by_field_name("alias")
                if alias is not None:
                    out.add(_text(alias, data))
            elif node.type == "import_statement":
                out.add(_text(name, data).split(".", 1)[0])
            else:
                out.add(_text(name, data).rsplit(".", 1)[-1])
        if any(c.type == "wildcard_import" for c in node.named_children):
            out.add("*")
    return out


def imported_names(text: str, path: str) -> set[str]:
    """The names the top-level imports of a Python file bind."""
    root, data, language = _parse(text, path)
    return _imported_names(root, data) - {"*"} if root is not None and language == "python" else set()


def module_scope(text: str, path: str, module: str) -> Scope | None:
    """Top-level functions, classes and assigned names of a module file."""
    root, data, language = _parse(text, path)
    if root is None:
        return None
    members: dict[str, Member] = {}
    for child in root.named_children:
        node = child.children[-1] if child.type == "decorated_definition" and child.children else child
        if node.type == "export_statement" and node.named_children:
            node = node.named_children[0]
        name = node.child_by_field_name("name")
        if node.type in ("function_definition", "function_declaration", "class_definition", "class_declaration"):
            if name is not None:
                members.setdefault(_text(name, data), Member(_text(name, data), _signature(node, data)))
        elif _assignment(node) is not None:
            left = _assignment(node).child_by_field_name("left")
            if left is not None and left.type == "identifier" and not _text(left, data).startswith("__"):
                members.setdefault(_text(left, data), Member(_text(left, data), _text(left, data)))
        elif node.type in ("lexical_declaration", "variable_declaration"):
            for decl in node.named_children:
                var = decl.child_by_field_name("name")
                if var is not None:
                    members.setdefault(_text(var, data), Member(_text(var, data), _text(var, data)))
    header = f"# module {module}" if language == "python" else f"// module {module}"
    # what the module imports is an attribute of it too; a star import or a package's
    # submodules add names this parse cannot list
    imported = _imported_names(root, data)
    every = tuple(dict.fromkeys([*members, *sorted(imported - {"*"})]))
    complete = "*" not in imported and not path.endswith(("__init__.py", "index.ts", "index.js"))
    return Scope(f"module {module}", header, tuple(list(members.values())[:MAX_MEMBERS]), every, complete)
