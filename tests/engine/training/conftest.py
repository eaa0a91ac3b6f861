"""Fixtures for the training-data tests: the embedded tokenizer and a tiny corpus on disk."""

from __future__ import annotations

import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.training.corpus import CorpusFile, write_corpus

TOKENIZER_PATH = DEFAULT_MODEL_DIR / "tokenizer.json"

SHAPES = '''"""Shapes and their areas."""

import math


class Circle:
    def __init__(self, radius):
        self.radius = radius

    def area(self):
        return math.pi * self.radius**2


class Square:
    def __init__(self, side):
        self.side = side

    def area(self):
        return self.side * self.side
'''

REPORT = '''"""Print the total area of some shapes."""

from shapes import Circle, Square


def total_area(items):
    total = 0.0
    for item in items:
        if item is None:
            continue
        total += item.area()
    return total


def main():
    print(total_area([Circle(1.0), Square(2.0)]))
'''

UTIL = '''def clamp(value, low, high):
    """Limits value to [low, high]."""
    if value < low:
        return low
    if value > high:
        return high
    return value
'''

TS = """export interface Point {
  x: number;
  y: number;
}

export function add(a: Point, b: Point): Point {
  return { x: a.x + b.x, y: a.y + b.y };
}
"""


def corpus_files() -> list[CorpusFile]:
    files = [
        CorpusFile("geo/shapes.py", "geo", "geo", "t:geo", "python", "t", SHAPES),
        CorpusFile("geo/report.py", "geo", "geo", "t:geo", "python", "t", REPORT),
        CorpusFile("geo/util.py", "geo", "geo", "t:geo", "python", "t", UTIL),
        CorpusFile("pts/src/point.ts", "pts", "pts/src", "t:pts", "typescript", "t", TS),
    ]
    held = CorpusFile("other/clamp.py", "other", "other", "t:other", "python", "t", UTIL.replace("value", "v"))
    held.split = "heldout"
    return files + [held]


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(TOKENIZER_PATH)


@pytest.fixture
def tiny_corpus(tmp_path):
    out = tmp_path / "corpus"
    write_corpus(out, corpus_files(), {"test": True})
    return out
