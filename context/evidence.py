"""Evidence for one cursor: code like the code being written, and what the names there are.

Three kinds, all chosen from the lines before the cursor's line (so typing on a line does not
change them) plus the receiver being typed (``self.``, ``pricing.``):

* **members** — the class or module the receiver names: ``self``/``cls`` (the enclosing
  class), an imported module or class, or a local variable annotated or assigned with a
  class the index knows. Also the names index-aware decoding allows after the dot.
* **definitions** — signatures of the functions and classes used near the cursor that are
  defined elsewhere in the workspace (or elsewhere in the cursor file).
* **similar** — windows of `similar_window_lines` lines whose identifiers overlap most
  (Jaccard) with the lines before the cursor, from the files the lexical index finds and from
  distant parts of the cursor file, each with the lines that follow it: what came next there
  is the likeliest thing to come next here (Copilot, Cody and Continue retrieve the same way).

`gather` returns them most useful first; the prompt builder places the most useful nearest
the cursor. `NameHints` carries what exists here to index-aware decoding.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from deepfim.context import members
from deepfim.context.graph import ImportGraph
from deepfim.context.lexical import IDENTIFIER, LexicalIndex
from deepfim.context.records import FileEntry, ImportSpec
from deepfim.context.secrets import redact
from deepfim.context.similar_window import LineIndex, best_window
from deepfim.engine.api import NameHints

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RECEIVER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\.([A-Za-z_][A-Za-z0-9_]*)?")
# (variable, class) of `name: Class` and `name = Class(`: one compiled pattern each for every
# variable (a pattern per receiver name was compiled afresh each time: ~7 ms a new file's prompt)
ANNOTATED = re.compile(r"\b([A-Za-z_]\w*)\s*:\s*([A-Z][A-Za-z0-9_]*)")
ASSIGNED = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*([A-Z][A-Za-z0-9_]*)\s*\(")
DOTTED_NAME = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\.[A-Za-z_]")  # `pricing.tax_for`, not `a.b.c`'s `b`
MAX_KNOWN_MODULES = 6
COMMON = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self", "cls", "this", "super"}
MAX_DEFINERS = 3  # a name defined in more files says little about which one is meant
CONTINUATION_LINES = 4
QUERY_LINES = 8
SIMILAR_FILES = 6
MAX_SIMILAR = 2
OWN_SEARCH_CHARS = 100_000  # of the cursor file, on each side of the cursor


@dataclass(frozen=True)
class Evidence:
    kind: str  # "members" | "definitions" | "similar"
    path: str  # the file it comes from
    text: str
    score: float
    reason: str


@dataclass(frozen=True)
class EvidenceOptions:
    """Which kinds to gather (the evaluation's ablations switch them off one by one)."""

    members: bool = True
    definitions: bool = True
    similar: bool = True
    workspace: bool = True  # look beyond the cursor file


@dataclass
class RepoView:
    """What evidence reads of a workspace (taken under the workspace's lock)."""

    entries: Mapping[str, FileEntry]
    definers: Mapping[str, set[str]]
    lexical: LexicalIndex | None
    graph: ImportGraph | None
    text_of: Callable[[str], str | None]  # rel -> current text (buffer or disk), None if unreadable
    recent: tuple[str, ...] = ()  # files edited or opened lately, most recent first


@dataclass
class CursorText:
    """The cursor file as the buffer holds it."""

    rel: str
    prefix: str
    suffix: str
    lines_before: str  # far + near prefix of the window, without the cursor's line
    cursor_line: str  # the cursor's line up to the cursor
    window_lines: tuple[int, int] = (0, 0)  # lines of the cursor file the window shows


_lines = LineIndex()


def read_ahead(text: str) -> None:
    """Builds the similar-code search's line index of a workspace file's `text` ahead of the
    prompts that search it (`Workspace.read_ahead`): a newly opened file's first prompt built
    it for ~3 candidate files, ~20 ms of its context stage on a 2-core machine."""
    _lines.of(text)


@dataclass
class Gathered:
    evidence: list[Evidence] = field(default_factory=list)
    hints: NameHints = field(default_factory=NameHints)


def gather(repo: RepoView, cursor: CursorText, options: EvidenceOptions = EvidenceOptions()) -> Gathered:
    """Evidence for the cursor, most useful first, and the names that exist there."""
    out: list[Evidence] = []
    receiver, scope = _receiver_scope(repo, cursor, options)
    if scope is not None and options.members:
        indent = "" if scope.name.startswith("module") else "    "
        out.append(Evidence("members", scope.path, scope.scope.render(indent), 3.0, f"members of {receiver}"))
    if options.definitions:
        out += _definitions(repo, cursor, options, exclude={scope.path} if scope else set())
    if options.similar:
        out += _similar(repo, cursor, options)
    # the hints (not part of the prompt) follow the cursor exactly: a member being typed right now
    at_cursor = [m for m in RECEIVER.finditer(cursor.cursor_line) if m.end() == len(cursor.cursor_line)]
    hint_receiver = at_cursor[-1].group(1) if at_cursor and at_cursor[-1].group(1) == receiver else ""
    statement = cursor.cursor_line.strip()
    defining = hint_receiver in ("self", "cls", "this") and statement.startswith(f"{hint_receiver}.")
    members_at = scope.scope.names() if scope and hint_receiver and scope.scope.complete else ()
    known = _known_receivers(repo, cursor, options)
    hints_known = tuple((name, found.scope.names()) for name, found in known.items())
    return Gathered(out, NameHints(hint_receiver, members_at, defining, _names(repo, cursor), hints_known))


def _known_receivers(repo: RepoView, cursor: CursorText, options: EvidenceOptions) -> dict[str, _FoundScope]:
    """(receiver, every member) for what the completion may write a dot after: the enclosing
    class as ``self``/``cls``/``this``, and up to MAX_KNOWN_MODULES names the cursor file
    imports (those used near the cursor first, then lower-case ones: modules) that resolve
    to a module or class the index knows in full."""
    text = cursor.prefix + cursor.suffix
    known: dict[str, _FoundScope] = {}
    enclosing = members.enclosing_class(text, cursor.rel, cursor.prefix.count("\n"))
    if enclosing is not None and enclosing.complete:
        for name in ("self", "cls", "this"):
            known[name] = _FoundScope(enclosing, cursor.rel)
    if options.workspace:
        near = (cursor.lines_before + cursor.cursor_line).split("\n")[-QUERY_LINES - 1 :]
        used = dict.fromkeys(m.group(1) for line in reversed(near) for m in DOTTED_NAME.finditer(line))
        imported = members.imported_names(text, cursor.rel)
        rest = sorted(imported - set(used), key=lambda n: (not n.islower(), n))  # modules are lower case
        candidates = [*(n for n in used if n in imported), *rest]
        for name in [n for n in candidates if n not in known and n not in COMMON][:MAX_KNOWN_MODULES]:
            found = _resolve(repo, cursor, name, text)
            if found is not None and found.scope.complete:
                known[name] = found
    return known


@dataclass
class _FoundScope:
    scope: members.Scope
    path: str

    @property
    def name(self) -> str:
        return self.scope.name


def _receiver_scope(repo: RepoView, cursor: CursorText, options: EvidenceOptions) -> tuple[str, _FoundScope | None]:
    """The last receiver on the cursor's line (``pricing`` in ``x = pricing.tax_for(y, self.``
    is ``self``) and what it offers. The last one, not only one right at the cursor, so the
    evidence stays put while the member and its arguments are typed."""
    matches = list(RECEIVER.finditer(cursor.cursor_line))
    if not matches:
        return "", None
    receiver = matches[-1].group(1)
    text = cursor.prefix + cursor.suffix
    if receiver in ("self", "cls", "this"):
        line = cursor.prefix.count("\n")
        scope = members.enclosing_class(text, cursor.rel, line)
        return receiver, _FoundScope(scope, cursor.rel) if scope else None
    if not options.workspace:
        head = receiver.split(".")[0]
        scope = members.named_class(text, cursor.rel, head)
        return receiver, _FoundScope(scope, cursor.rel) if scope else None
    return receiver, _resolve(repo, cursor, receiver, text)


def _resolve(repo: RepoView, cursor: CursorText, receiver: str, text: str) -> _FoundScope | None:
    """An imported module or class, a class of the workspace, or a variable's annotated class."""
    last = receiver.rsplit(".", 1)[-1]
    entry = repo.entries.get(cursor.rel)
    if entry is not None and repo.graph is not None:
        for spec in entry.imports:
            if spec.spec.rsplit(".", 1)[-1].rsplit("/", 1)[-1] != last:
                continue
            for target in repo.graph.resolve(entry, (ImportSpec(spec.spec, spec.relative),)):
                found = _scope_in(repo, target, last)
                if found is not None:
                    return found
    before = cursor.lines_before[-4000:]
    for pattern in (ANNOTATED, ASSIGNED):
        typed = [cls for name, cls in pattern.findall(before) if name == last]
        if typed:
            last = typed[-1]
            break
    found = members.named_class(text, cursor.rel, last)
    if found is not None:
        return _FoundScope(found, cursor.rel)
    for rel in sorted(repo.definers.get(last, ()))[:MAX_DEFINERS]:
        found = _scope_in(repo, rel, last)
        if found is not None:
            return found
    return None


def _scope_in(repo: RepoView, rel: str, name: str) -> _FoundScope | None:
    """Class `name` in file `rel`, else the file itself as a module."""
    text = repo.text_of(rel)
    if text is None:
        return None
    scope = members.named_class(text, rel, name)
    if scope is None:
        module = rel.rsplit(".", 1)[0].replace("/", ".")
        if module.rsplit(".", 1)[-1] != name and not module.endswith(f"{name}.__init__"):
            return None
        scope = members.module_scope(text, rel, module)
    return _FoundScope(scope, rel) if scope is not None and scope.members else None


def _names_near(cursor: CursorText) -> list[str]:
    """Identifiers of the lines before the cursor's line and of the line itself, nearest first."""
    recent = (cursor.lines_before + cursor.cursor_line).split("\n")[-QUERY_LINES - 1 :]
    out = dict.fromkeys(n for line in reversed(recent) for n in reversed(IDENTIFIER.findall(line)))
    return [n for n in out if n not in COMMON]


def _definitions(repo: RepoView, cursor: CursorText, options: EvidenceOptions, exclude: set[str]) -> list[Evidence]:
    """Signatures of names used near the cursor, grouped by the file defining them."""
    by_file: dict[str, list[str]] = {}
    enclosing_line = cursor.prefix.count("\n")
    for name in _names_near(cursor):
        rels = sorted(repo.definers.get(name, ()))
        if not options.workspace:
            rels = [r for r in rels if r == cursor.rel]
        if not rels or len(rels) > MAX_DEFINERS:
            continue
        for rel in rels:
            entry = repo.entries.get(rel)
            if entry is None or rel in exclude:
                continue
            for d in entry.definitions:
                if d.name != name or (rel == cursor.rel and d.line <= enclosing_line < d.line + 1):
                    continue
                if rel == cursor.rel and cursor.window_lines[0] <= d.line <= cursor.window_lines[1]:
                    continue  # already in the window, exactly
                sig = d.signature.rstrip(":{ ")
                if sig and sig not in by_file.setdefault(rel, []):
                    by_file[rel].append(sig)
    return [
        Evidence("definitions", rel, "\n".join(sigs) + "\n", 2.0 - 0.01 * i, "definitions of names near the cursor")
        for i, (rel, sigs) in enumerate(by_file.items())
    ]


def _similar(repo: RepoView, cursor: CursorText, options: EvidenceOptions) -> list[Evidence]:
    """The best windows of similar code (and what follows them), at most one per file."""
    query_lines = cursor.lines_before.split("\n")[-QUERY_LINES - 1 :]
    query = frozenset(n for line in query_lines for n in IDENTIFIER.findall(line))
    if len(query) < 2:
        return []
    candidates: list[tuple[str, str, tuple[int, int]]] = []  # (rel, text, lines to skip)
    head = cursor.prefix[-OWN_SEARCH_CHARS:]  # a huge file: only the text around the cursor
    head = head[head.find("\n") + 1 :] if len(head) < len(cursor.prefix) else head
    skipped_lines = cursor.prefix.count("\n") - head.count("\n")
    own = head + cursor.suffix[:OWN_SEARCH_CHARS]
    a, b = cursor.window_lines
    candidates.append((cursor.rel, own, (a - skipped_lines, b - skipped_lines)))
    if options.workspace:
        rels = list(repo.recent[:SIMILAR_FILES])
        if repo.lexical is not None:
            rels += [rel for rel, _, _ in repo.lexical.similar(set(query), repo.entries, cursor.rel, SIMILAR_FILES)]
        for rel in dict.fromkeys(r for r in rels if r != cursor.rel):
            text = repo.text_of(rel)
            if text is not None:
                candidates.append((rel, text, (-1, -1)))
    width = max(2, len(query_lines) - 1)
    found = []
    for rel, text, skip in candidates:
        lines, occurrences = _lines.of(text)
        best, best_at = best_window(occurrences, query, width, skip)
        if best_at >= 0 and best > 0.2:
            end = min(len(lines), best_at + width + CONTINUATION_LINES)
            snippet = "\n".join(lines[best_at:end]) + "\n"
            reason = f"similar to the lines before the cursor (lines {best_at + 1}-{end}, {best:.2f})"
            found.append(Evidence("similar", rel, redact(snippet), best, reason))
    found.sort(key=lambda e: -e.score)
    return found[:MAX_SIMILAR]


def _names(repo: RepoView, cursor: CursorText) -> frozenset[str]:
    own = NAME.findall(cursor.prefix[-50_000:]) + NAME.findall(cursor.suffix[:20_000])
    return frozenset(own) | frozenset(repo.definers) | COMMON
