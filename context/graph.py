"""The cross-file import graph: resolves each file's import specs to workspace files.

Resolution is per language and deliberately local (no sys.path, tsconfig or go.mod
reading): relative specs are joined to the importing file's directory; absolute ones are
matched as a path *suffix* against the workspace's files, preferring the candidate that
shares the longest directory prefix with the importer. Specs that name nothing in the
workspace (the standard library, third-party packages) simply produce no edge.

Python suffix matches must start at a source root (a directory that is not itself a
package), so ``import types`` does not resolve to ``mypkg/types.py``.

The graph is rebuilt lazily in full when the set of files changes (a new file can satisfy
imports anywhere); a content-only change re-resolves just that file.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict

from deepfim.context.records import FileEntry, ImportSpec

MAX_TARGETS = 20
_JS_EXTS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".d.ts")


class ImportGraph:
    """Forward (`imports_of`) and reverse (`importers_of`) edges between workspace files."""

    def __init__(self) -> None:
        self._entries: dict[str, FileEntry] = {}
        self._by_suffix: dict[str, list[str]] = defaultdict(list)  # "b/c.py" -> ["a/b/c.py", "b/c.py"]
        self._by_dir: dict[str, list[str]] = defaultdict(list)
        self._namespaces: dict[str, list[str]] = defaultdict(list)
        self._go_dirs: list[str] = []
        self.forward: dict[str, tuple[str, ...]] = {}
        self.reverse: dict[str, set[str]] = defaultdict(set)
        self._stale = True

    # -- maintenance ---------------------------------------------------------------------
    def set_entries(self, entries: dict[str, FileEntry]) -> None:
        self._entries = dict(entries)
        self._stale = True

    def put(self, entry: FileEntry) -> None:
        old = self._entries.get(entry.rel)
        self._entries[entry.rel] = entry
        if self._stale:
            return
        if old is None or _namespaces(old) != _namespaces(entry):
            self._stale = True
            return
        self._set_forward(entry.rel, self.resolve(entry))

    def remove(self, rel: str) -> None:
        if self._entries.pop(rel, None) is not None:
            self._stale = True

    def ensure(self) -> None:
        """Rebuilds every index and edge if the set of files changed since the last build."""
        if not self._stale:
            return
        self._by_suffix.clear()
        self._by_dir.clear()
        self._namespaces.clear()
        self.forward.clear()
        self.reverse.clear()
        for rel in sorted(self._entries):
            parts = rel.split("/")
            for i in range(len(parts)):
                self._by_suffix["/".join(parts[i:])].append(rel)
            self._by_dir[posixpath.dirname(rel)].append(rel)
            for name in _namespaces(self._entries[rel]):
                self._namespaces[name].append(rel)
        self._go_dirs = sorted(
            d for d, files in self._by_dir.items() if any(self._entries[r].language == "go" for r in files)
        )
        self._stale = False
        for rel, entry in self._entries.items():
            self._set_forward(rel, self.resolve(entry))

    def _set_forward(self, rel: str, targets: tuple[str, ...]) -> None:
        for old in self.forward.get(rel, ()):
            self.reverse[old].discard(rel)
        self.forward[rel] = targets
        for target in targets:
            self.reverse[target].add(rel)

    @property
    def edge_count(self) -> int:
        return sum(len(t) for t in self.forward.values())

    def files_in(self, directory: str) -> list[str]:
        """Files directly in `directory` ("" for the root), sorted."""
        return self._by_dir.get(directory, [])

    def imports_of(self, rel: str) -> tuple[str, ...]:
        return self.forward.get(rel, ())

    def importers_of(self, rel: str) -> list[str]:
        return sorted(self.reverse.get(rel, ()))

    # -- resolution ----------------------------------------------------------------------
    def resolve(self, entry: FileEntry, imports: tuple[ImportSpec, ...] | None = None) -> tuple[str, ...]:
        """Workspace files that `entry`'s imports (or the given ones) refer to, sorted."""
        resolver = _RESOLVERS.get(entry.language)
        if resolver is None:
            return ()
        found: set[str] = set()
        for spec in entry.imports if imports is None else imports:
            found.update(resolver(self, entry.rel, spec)[:MAX_TARGETS])
        found.discard(entry.rel)
        return tuple(sorted(found))

    def _exact(self, rel: str) -> str | None:
        rel = posixpath.normpath(rel)
        return rel if rel in self._entries else None

    def _suffix(self, importer: str, tail: str, accept=None) -> str | None:
        """The workspace file whose path ends with `tail`, closest to `importer`."""
        tail = posixpath.normpath(tail).lstrip("/")
        if tail.startswith("../"):
            return None
        matches = [r for r in self._by_suffix.get(tail, ()) if accept is None or accept(r[: len(r) - len(tail)])]
        if not matches:
            return None
        return max(matches, key=lambda r: (len(posixpath.commonpath([r, importer])), -len(r), r))

    def _dir_files(self, directory: str, language: str) -> list[str]:
        return [r for r in self._by_dir.get(directory, ()) if self._entries[r].language == language]

    def _python(self, importer: str, spec: ImportSpec) -> list[str]:
        text = spec.spec
        if text.startswith("."):
            dots = len(text) - len(text.lstrip("."))
            base = posixpath.dirname(importer)
            for _ in range(dots - 1):
                base = posixpath.dirname(base)
            rest = text[dots:].replace(".", "/")
            path = posixpath.join(base, rest) if rest else base
            tails = (path + ".py", path + "/__init__.py") if rest else (path + "/__init__.py",)
            return [hit for hit in map(self._exact, tails) if hit][:1]

        def at_source_root(prefix: str) -> bool:
            return not prefix or prefix.rstrip("/") + "/__init__.py" not in self._entries

        parts = text.split(".")
        # a project that maps a package onto another folder (setuptools package-dir:
        # `deepfim.context` lives in `context/`) is found by dropping the leading name
        for drop in range(min(2, max(0, len(parts) - 2)) + 1):
            module = "/".join(parts[drop:])
            for tail in (module + ".py", module + "/__init__.py", module + ".pyi", module + "/__init__.pyi"):
                hit = self._suffix(importer, tail, at_source_root)
                if hit:
                    return [hit]
        return []

    def _js(self, importer: str, spec: ImportSpec) -> list[str]:
        if not spec.spec.startswith("."):
            return []
        path = posixpath.normpath(posixpath.join(posixpath.dirname(importer), spec.spec))
        stem = path[:-3] if path.endswith((".js", ".jsx")) else path
        candidates = [path, *(path + e for e in _JS_EXTS), *(stem + e for e in _JS_EXTS)]
        candidates += [f"{path}/index{e}" for e in _JS_EXTS]
        for candidate in candidates:
            hit = self._exact(candidate)
            if hit:
                return [hit]
        return []

    def _go(self, importer: str, spec: ImportSpec) -> list[str]:
        # the longest tail of the import path that names a package directory here
        # ("example.com/shop/pricing" -> "go/pricing" via "pricing")
        parts = spec.spec.split("/")
        for i in range(len(parts)):
            tail = "/".join(parts[i:])
            dirs = [d for d in self._go_dirs if d == tail or d.endswith("/" + tail)]
            if dirs:
                best = max(dirs, key=lambda d: (len(posixpath.commonpath([d, importer])), -len(d), d))
                return self._dir_files(best, "go")
        return []

    def _rust(self, importer: str, spec: ImportSpec) -> list[str]:
        directory, stem = posixpath.split(importer)
        stem = stem.removesuffix(".rs")
        module_dir = directory if stem in ("mod", "lib", "main") else posixpath.join(directory, stem)
        if spec.relative:  # `mod x;`
            tails = (f"{module_dir}/{spec.spec}.rs", f"{module_dir}/{spec.spec}/mod.rs")
            return [hit for hit in map(self._exact, tails) if hit][:1]
        parts = spec.spec.split("::")
        if parts[0] == "crate":
            segments = importer.split("/")
            base = "/".join(segments[: segments.index("src") + 1]) if "src" in segments[:-1] else directory
        elif parts[0] == "super":
            base = posixpath.dirname(module_dir)
        elif parts[0] == "self":
            base = module_dir
        else:
            return []
        rest = parts[1:]
        while rest and rest[0] == "super":
            base, rest = posixpath.dirname(base), rest[1:]
        for k in range(len(rest), 0, -1):
            path = posixpath.join(base, *rest[:k])
            for tail in (path + ".rs", path + "/mod.rs"):
                hit = self._exact(tail)
                if hit:
                    return [hit]
        return []

    def _java(self, importer: str, spec: ImportSpec) -> list[str]:
        parts = spec.spec.split(".")
        for k in range(len(parts), 0, -1):
            hit = self._suffix(importer, "/".join(parts[:k]) + ".java")
            if hit:
                return [hit]
            if k == len(parts):  # `import a.b.*;` names a package directory
                for directory in sorted(self._by_dir):
                    if directory == "/".join(parts) or directory.endswith("/" + "/".join(parts)):
                        return self._dir_files(directory, "java")
        return []

    def _c(self, importer: str, spec: ImportSpec) -> list[str]:
        if spec.relative:
            hit = self._exact(posixpath.join(posixpath.dirname(importer), spec.spec))
            if hit:
                return [hit]
        hit = self._suffix(importer, spec.spec)
        return [hit] if hit else []

    def _csharp(self, importer: str, spec: ImportSpec) -> list[str]:
        return self._namespaces.get(spec.spec, [])

    def _ruby(self, importer: str, spec: ImportSpec) -> list[str]:
        tail = spec.spec if spec.spec.endswith(".rb") else spec.spec + ".rb"
        if spec.relative:
            hit = self._exact(posixpath.join(posixpath.dirname(importer), tail))
        else:
            hit = self._suffix(importer, tail)
        return [hit] if hit else []

    def _lua(self, importer: str, spec: ImportSpec) -> list[str]:
        path = spec.spec.replace(".", "/")
        for tail in (path + ".lua", path + "/init.lua"):
            hit = self._suffix(importer, tail)
            if hit:
                return [hit]
        return []


def language_family(language: str) -> str:
    """Languages whose files refer to each other's definitions (TS imports JS, C++ includes C)."""
    return _FAMILIES.get(language, language)


_FAMILIES = {"typescript": "javascript", "tsx": "javascript", "cpp": "c"}


def _namespaces(entry: FileEntry) -> tuple[str, ...]:
    return tuple(d.name for d in entry.definitions if d.kind == "namespace") if entry.language == "csharp" else ()


_RESOLVERS = {
    "python": ImportGraph._python,
    "javascript": ImportGraph._js,
    "typescript": ImportGraph._js,
    "tsx": ImportGraph._js,
    "go": ImportGraph._go,
    "rust": ImportGraph._rust,
    "java": ImportGraph._java,
    "c": ImportGraph._c,
    "cpp": ImportGraph._c,
    "csharp": ImportGraph._csharp,
    "ruby": ImportGraph._ruby,
    "lua": ImportGraph._lua,
}
