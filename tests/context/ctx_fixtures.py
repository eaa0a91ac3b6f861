"""Fixture repositories for the workspace-context tests (imported by name: a module called
`conftest` would collide with the other test folders' own)."""

from __future__ import annotations

from pathlib import Path

POLYGLOT = {
    # Python: `py/` is a source root (not a package), `app` a package
    "py/app/__init__.py": "",
    "py/app/models.py": (
        "class User:\n"
        "    def __init__(self, name: str) -> None:\n"
        "        self.name = name\n\n"
        "    def display_name(self) -> str:\n"
        "        return self.name.title()\n\n\n"
        "def make_user(name: str) -> User:\n"
        "    return User(name)\n"
    ),
    "py/app/service.py": (
        "from app.models import User, make_user\n"
        "from . import util\n\n\n"
        "def register(name: str) -> User:\n"
        "    user = make_user(util.slugify(name))\n"
        "    return user\n"
    ),
    "py/app/util.py": "import re\n\n\ndef slugify(text: str) -> str:\n    return re.sub(r'\\W+', '-', text).lower()\n",
    # JavaScript / TypeScript / TSX
    "web/src/index.js": (
        "import { add } from './math.js';\n"
        "const fmt = require('./fmt');\n\n"
        "export function main() {\n  return fmt(add(1, 2));\n}\n"
    ),
    "web/src/math.js": (
        "export function add(a, b) {\n  return a + b;\n}\n\n"
        "export class Calc {\n  total(xs) {\n    return xs.reduce(add, 0);\n  }\n}\n"
    ),
    "web/src/fmt.js": "module.exports = function fmt(x) {\n  return `${x}`;\n};\n",
    "web/src/types.ts": (
        "export interface Point {\n  x: number;\n  y: number;\n}\n\n"
        "export type Id = string | number;\n\nexport enum Color {\n  Red,\n  Blue,\n}\n"
    ),
    "web/src/geo.ts": (
        "import { Point } from './types';\n\n"
        "export class Circle {\n  constructor(public center: Point, public r: number) {}\n\n"
        "  area(): number {\n    return Math.PI * this.r * this.r;\n  }\n}\n\n"
        "export function distance(a: Point, b: Point): number {\n  return Math.hypot(a.x - b.x, a.y - b.y);\n}\n"
    ),
    "web/src/App.tsx": (
        "import { Circle } from './geo';\n\n"
        "type Props = { title: string };\n\n"
        "export function Header(props: Props) {\n  return <h1>{props.title}</h1>;\n}\n\n"
        "export const App = () => <Header title={String(new Circle({ x: 0, y: 0 }, 1).area())} />;\n"
    ),
    # Go
    "go/cart/cart.go": (
        'package cart\n\nimport (\n\t"fmt"\n\n\t"example.com/shop/pricing"\n)\n\n'
        "type Cart struct {\n\tItems []int\n}\n\n"
        "func (c *Cart) Total() int {\n\tfmt.Println(len(c.Items))\n\treturn pricing.Apply(c.Items)\n}\n"
    ),
    "go/pricing/pricing.go": (
        "package pricing\n\nfunc Apply(items []int) int {\n\tsum := 0\n"
        "\tfor _, x := range items {\n\t\tsum += x\n\t}\n\treturn sum\n}\n"
    ),
    # Rust
    "rust/src/main.rs": (
        "mod geometry;\nmod util;\n\nuse crate::util::clamp;\n\n"
        'fn main() {\n    let p = geometry::Point { x: 1.0, y: 2.0 };\n    println!("{}", clamp(p.norm()));\n}\n'
    ),
    "rust/src/geometry.rs": (
        "pub struct Point {\n    pub x: f64,\n    pub y: f64,\n}\n\n"
        "pub trait Shape {\n    fn area(&self) -> f64;\n}\n\n"
        "impl Point {\n    pub fn norm(&self) -> f64 {\n        (self.x * self.x + self.y * self.y).sqrt()\n    }\n}\n"
    ),
    "rust/src/util.rs": "pub fn clamp(x: f64) -> f64 {\n    x.max(0.0).min(1.0)\n}\n",
    # Java
    "java/src/com/acme/App.java": (
        "package com.acme;\n\nimport com.acme.util.Strings;\nimport java.util.List;\n\n"
        "public class App {\n    public static void main(String[] args) {\n"
        '        System.out.println(Strings.upper("hi"));\n    }\n}\n'
    ),
    "java/src/com/acme/util/Strings.java": (
        "package com.acme.util;\n\npublic final class Strings {\n"
        "    public static String upper(String s) {\n        return s.toUpperCase();\n    }\n}\n"
    ),
    # C and C++
    "c/vec.h": (
        "#ifndef VEC_H\n#define VEC_H\n\nstruct vec {\n    int *data;\n    int len;\n};\n\n"
        "typedef struct vec vec_t;\n\nint vec_len(const struct vec *v);\n\n#endif\n"
    ),
    "c/vec.c": '#include "vec.h"\n\nint vec_len(const struct vec *v) {\n    return v->len;\n}\n',
    "c/main.c": (
        '#include <stdio.h>\n#include "vec.h"\n\nint main(void) {\n'
        '    struct vec v = {0, 0};\n    printf("%d\\n", vec_len(&v));\n    return 0;\n}\n'
    ),
    "cpp/shape.hpp": (
        "#pragma once\n\nnamespace geo {\nclass Shape {\n public:\n  virtual ~Shape() = default;\n"
        "  virtual double area() const = 0;\n};\n}  // namespace geo\n"
    ),
    "cpp/circle.cpp": (
        '#include "shape.hpp"\n\nclass Circle : public geo::Shape {\n public:\n'
        "  explicit Circle(double r) : r_(r) {}\n  double area() const override;\n\n private:\n  double r_;\n};\n\n"
        "double Circle::area() const {\n  return 3.14159 * r_ * r_;\n}\n"
    ),
    # C#
    "cs/Models/Order.cs": (
        "namespace Shop.Models\n{\n    public class Order\n    {\n"
        "        public decimal Total() { return 0m; }\n    }\n}\n"
    ),
    "cs/Services/Billing.cs": (
        "using System;\nusing Shop.Models;\n\nnamespace Shop.Services\n{\n    public interface IBilling\n    {\n"
        "        void Charge(Order order);\n    }\n\n    public class Billing : IBilling\n    {\n"
        "        public void Charge(Order order) { Console.WriteLine(order.Total()); }\n    }\n}\n"
    ),
    # Ruby
    "rb/lib/shop.rb": "require 'json'\nrequire_relative 'shop/cart'\n\nmodule Shop\n  VERSION = '1.0'\nend\n",
    "rb/lib/shop/cart.rb": (
        "module Shop\n  class Cart\n    def initialize\n      @items = []\n    end\n\n"
        "    def total\n      @items.sum\n    end\n\n    def self.empty\n      new\n    end\n  end\nend\n"
    ),
    # Lua
    "lua/main.lua": 'local util = require("lib.util")\n\nprint(util.trim("  x  "))\n',
    "lua/lib/util.lua": (
        "local M = {}\n\nfunction M.trim(s)\n  return (s:gsub('^%s+', ''):gsub('%s+$', ''))\nend\n\n"
        "local function helper(x)\n  return x\nend\n\nreturn M\n"
    ),
}


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Writes `files` (relative path -> text or bytes) under `root` and returns `root`."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def prompt_of(ws, tok, path, prefix: str, suffix: str, budget: int, layout: str = "window"):
    """The prompt the language server would build, with `budget` tokens for the repository
    part and as many for the cursor file's copy (the window parts at their defaults)."""
    from deepfim.context.prompt_builder import Layout, PromptSpec
    from deepfim.context.settings import PromptBudget
    from deepfim.engine.model.prompt_format import FimOrder

    spec = PromptSpec(Layout(layout), FimOrder.SPM, PromptBudget(repository=budget, cursor_file=budget))
    return ws.prompt(tok, spec, path, prefix, suffix)
