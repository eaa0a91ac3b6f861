"""A small held-out corpus for the evaluation tests: two Python files of one package and a
TypeScript file (functions, classes, blocks, strings and comments that mimic code)."""

from __future__ import annotations

from deepfim.engine.training.corpus import CorpusFile

PY = '''"""A module docstring that mentions value = compute(x) but is a string."""


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


def heldout_files() -> list[CorpusFile]:
    return [
        CorpusFile("pkg/mod.py", "r", "pkg", "u:pkg", "python", "s", PY, "heldout"),
        CorpusFile("pkg/other.py", "r", "pkg", "u:pkg", "python", "s", "from mod import compute\n" + PY, "heldout"),
        CorpusFile("web/clamp.ts", "w", "web", "u:web", "typescript", "s", TS, "heldout"),
    ]
