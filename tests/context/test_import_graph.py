"""The cross-file import graph on a repository with one small project per language."""

from __future__ import annotations

import pytest
from ctx_fixtures import write_tree

EDGES = {
    "py/app/service.py": {"py/app/models.py", "py/app/util.py"},
    "web/src/index.js": {"web/src/math.js", "web/src/fmt.js"},
    "web/src/geo.ts": {"web/src/types.ts"},
    "web/src/App.tsx": {"web/src/geo.ts"},
    "go/cart/cart.go": {"go/pricing/pricing.go"},
    "rust/src/main.rs": {"rust/src/geometry.rs", "rust/src/util.rs"},
    "java/src/com/acme/App.java": {"java/src/com/acme/util/Strings.java"},
    "c/main.c": {"c/vec.h"},
    "cpp/circle.cpp": {"cpp/shape.hpp"},
    "cs/Services/Billing.cs": {"cs/Models/Order.cs"},
    "rb/lib/shop.rb": {"rb/lib/shop/cart.rb"},
    "lua/main.lua": {"lua/lib/util.lua"},
}


@pytest.fixture
def ws(polyglot, make_workspace):
    return make_workspace(polyglot)


@pytest.mark.parametrize("rel", sorted(EDGES))
def test_imports_resolve_to_workspace_files(ws, rel):
    assert EDGES[rel] <= set(ws.imports_of(rel))


def test_reverse_edges_name_the_importers(ws):
    assert ws.importers_of("c/vec.h") == ["c/main.c", "c/vec.c"]
    assert ws.importers_of("py/app/models.py") == ["py/app/service.py"]


def test_external_modules_make_no_edges(ws):
    # `import re`, `java.util.List`, `<stdio.h>`, `fmt`, `System`, `require 'json'`
    for rel in ("py/app/util.py", "rb/lib/shop/cart.rb"):
        assert ws.imports_of(rel) == ()
    assert set(ws.imports_of("c/main.c")) == {"c/vec.h"}


def test_python_suffix_match_starts_at_a_source_root(tmp_path, make_workspace):
    root = write_tree(
        tmp_path / "r",
        {
            "src/pkg/__init__.py": "",
            "src/pkg/types.py": "X = 1\n",
            "src/pkg/core.py": "import types\nfrom pkg import types as t\n",
        },
    )
    ws = make_workspace(root)
    # `import types` is the standard library, not src/pkg/types.py; `pkg.types` is ours
    assert set(ws.imports_of("src/pkg/core.py")) == {"src/pkg/__init__.py", "src/pkg/types.py"}
    core = ws.entry("src/pkg/core.py")
    assert {i.spec for i in core.imports} >= {"types", "pkg", "pkg.types"}


def test_new_files_satisfy_imports_and_removed_ones_drop_edges(tmp_path, make_workspace):
    root = write_tree(tmp_path / "r", {"a.py": "import b\n"})
    ws = make_workspace(root)
    assert ws.imports_of("a.py") == ()
    (root / "b.py").write_text("def f(): pass\n")
    ws.scan()
    assert ws.imports_of("a.py") == ("b.py",) and ws.importers_of("b.py") == ["a.py"]
    (root / "b.py").unlink()
    ws.scan()
    assert ws.imports_of("a.py") == () and ws.importers_of("b.py") == []


def test_an_edit_that_adds_an_import_updates_the_graph(tmp_path, make_workspace):
    root = write_tree(tmp_path / "r", {"a.py": "x = 1\n", "b.py": "y = 2\n"})
    ws = make_workspace(root)
    ws.update_buffer(root / "a.py", "import b\nx = 1\n")
    assert ws.imports_of("a.py") == ("b.py",)
    ws.update_buffer(root / "a.py", None)  # closed unsaved: the disk text counts again
    assert ws.imports_of("a.py") == ()


def test_a_package_mapped_onto_another_folder_is_found(tmp_path, make_workspace):
    # setuptools package-dir: `deepfim.context.cursor` lives in context/cursor.py
    root = write_tree(
        tmp_path / "r",
        {
            "context/__init__.py": "",
            "context/cursor.py": "X = 1\n",
            "context/packer.py": "from deepfim.context.cursor import X\n",
        },
    )
    ws = make_workspace(root)
    assert ws.imports_of("context/packer.py") == ("context/cursor.py",)
