"""Small repositories for the evaluation tests.

* pkg: a Python module and a mirror of it (`other.py` is `mod.py` plus an import line), so every
  hole in one is answered, verbatim, by the other: context that must reach the prompt.
* shop: Python files whose names and literals occur nowhere else: no hole's answer is anywhere
  in the repository but in the hole itself.
* web: a TypeScript and a JavaScript file (statement blocks, template strings, comments).

Strings and comments mimic code (a hole must never start inside them); the docstring holds a
non-ASCII character, so byte and character offsets differ after it.
"""

from __future__ import annotations

from deepfim.engine.training.corpus import CorpusFile

PY = '''"""A module docstring — it mentions value = compute(x) but is a string."""


def compute(x):
    # a comment with total = x + 1 inside
    total = x + 1
    if total > 10:
        total = 10
        print("clamped", total)
    return total


class Box:
    def __init__(self, size):
        self.size = size
        self.items = []

    def add(self, item):
        if len(self.items) >= self.size:
            raise ValueError("full")
        self.items.append(item)
'''

TS = """export function clamp(v: number, lo: number, hi: number): number {
  if (v < lo) {
    return lo;
  }
  const top = Math.min(v, hi);
  return top;
}

export class Stack<T> {
  private items: T[] = [];
  push(item: T): void {
    this.items.push(item);
    console.log("pushed", item);
  }
}
"""

JS = """// Formatting helpers: const shown = render(cents) is only a comment.
export function formatPrice(cents, currency) {
  if (cents < 0) {
    throw new Error("negative price");
  }
  const whole = Math.floor(cents / 100);
  const rest = String(cents % 100).padStart(2, "0");
  return `${currency} ${whole}.${rest}`;
}
"""

INVENTORY = '''"""Stock levels of a small shop."""

from shop.pricing import unit_price


class Inventory:
    def __init__(self, owner):
        self.owner = owner
        self.levels = {}

    def restock(self, sku, count):
        if count <= 0:
            raise ValueError(f"cannot restock {count} of {sku}")
        self.levels[sku] = self.levels.get(sku, 0) + count
        return self.levels[sku]

    def worth(self):
        grand = 0
        for code, held in self.levels.items():
            grand += held * unit_price(code)
        return round(grand, 2)
'''

PRICING = '''"""Prices per stock-keeping unit, with a weekend discount."""

import datetime

PRICES = {"apple": 0.4, "pear": 0.55, "melon": 2.1}


def unit_price(sku, when=None):
    base = PRICES.get(sku)
    if base is None:
        raise KeyError(f"no price for {sku!r}")
    weekday = (when or datetime.date.today()).weekday()
    if weekday >= 5:
        return base * 0.9
    return base
'''

SHOP_CLI = '''"""Command line: print what the shop is worth."""

import sys

from shop.inventory import Inventory


def main(argv):
    store = Inventory(argv[1] if len(argv) > 1 else "nobody")
    for pair in argv[2:]:
        name, _, amount = pair.partition("=")
        store.restock(name, int(amount))
    print(f"{store.owner}: {store.worth()}")
    return 0
'''


def repo_files() -> list[tuple[str, str]]:
    """(path, text) of one repository: the hole languages plus files no hole is cut from."""
    return [
        ("pkg/mod.py", PY),
        ("pkg/other.py", "from mod import compute\n" + PY),
        ("web/clamp.ts", TS),
        ("web/format.js", JS),
        ("README.md", "# Notes\n\n    total = compute(x)\n    if total > 10:\n        return total\n"),
        ("src/lib.rs", "fn add(a: i32, b: i32) -> i32 {\n    let s = a + b;\n    s\n}\n"),
    ]


def heldout_files() -> list[CorpusFile]:
    """A corpus's held-out split: three units (pkg, shop, web), one evaluation repository each."""

    def held(path: str, unit: str, lang: str, text: str) -> CorpusFile:
        return CorpusFile(path, unit, path.rsplit("/", 1)[0], f"u:{unit}", lang, "test", text, "heldout")

    return [
        held("pkg/mod.py", "pkg", "python", PY),
        held("pkg/other.py", "pkg", "python", "from mod import compute\n" + PY),
        held("shop/inventory.py", "shop", "python", INVENTORY),
        held("shop/pricing.py", "shop", "python", PRICING),
        held("shop/cli.py", "shop", "python", SHOP_CLI),
        held("web/clamp.ts", "web", "typescript", TS),
    ]
