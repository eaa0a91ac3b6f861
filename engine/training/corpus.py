"""Build the training corpus: filter, deduplicate, split by package, write JSONL + manifest.

    python -m deepfim.engine.training.corpus --out data/corpus

Rules (the model card quotes them from `manifest.json`):

* Filters: not UTF-8, near-empty (< 64 non-blank chars), huge (> 200 kB), minified or data
  (a line > 500 chars, mean line > 100 chars, < 25 % alphanumeric), generated (a
  "this file was generated"/"do not edit" marker in the first 15 lines), Python that does not parse as 3.11.
* Deduplication, first source wins (stdlib, then PyPI, then npm): exact (sha256 of the
  text) and near-exact (sha256 of the text without blank lines, comment-only lines,
  indentation and case).
* Split unit: the largest directory subtree of a package that holds ≤ 1 MB (``email``,
  ``sympy/core``, ``rxjs/src/internal/operators``); a top-level module file is its own unit.
  Per language, units with ≥ 3 files, in a fixed hash order, are held out until ~6 % of
  the language's bytes. Whole units are held out, so a held-out file's package siblings are
  held out too (cross-file evaluation stays inside unseen code). Sources marked train-only
  (CPython's `test/`, transformers) are never held out, and CPython tests of a held-out
  stdlib package (``test/test_email/…``) are dropped.

Output: ``train.jsonl`` and ``heldout.jsonl`` (one `CorpusFile` per line) and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from deepfim.engine.training.sources import EXTENSIONS, Source, all_sources, stable_hash

log = logging.getLogger(__name__)

UNIT_MAX_BYTES = 1_000_000
HELDOUT_FRACTION = 0.06
MIN_HELDOUT_UNIT_FILES = 3
SPLIT_SALT = "deepfim-split-v1"

GENERATED = re.compile(
    r"this (file|module) (is|was) (auto(matically)?[- ]?)?generated|auto[- ]?generated (file|code|module|by)"
    r"|code generated (by|from)|@generated|do not edit|codec .*generated from",
    re.I,
)


@dataclass
class CorpusFile:
    """One source file of the corpus."""

    path: str  # relative to its source root, starts with the package name: "email/message.py"
    repo: str  # repository name shown in the repo marker: "cpython", "flask", "rxjs"
    package: str  # directory of the file; siblings in it are its cross-file context
    unit: str  # split unit ("cpython:email"); a whole unit is either train or held out
    lang: str
    source: str
    text: str
    split: str = "train"


def reject_reason(path: str, text: str) -> str | None:
    """Why a file is dropped (None when it is kept)."""
    if len("".join(text.split())) < 64:
        return "tiny"
    if len(text.encode("utf-8")) > 200_000:
        return "huge"
    lines = text.splitlines() or [""]
    if max(map(len, lines)) > 500 or len(text) / len(lines) > 100:
        return "minified_or_data"
    if sum(c.isalnum() for c in text) < 0.25 * len(text):
        return "data"
    if GENERATED.search("\n".join(lines[:15])):
        return "generated"
    if path.endswith(".py"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                compile(text, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
            except (SyntaxError, ValueError):
                return "syntax"
    return None


def normalised_hash(text: str) -> str:
    """Hash that ignores blank lines, comment-only lines, indentation, spacing and case."""
    kept = []
    for line in text.splitlines():
        line = " ".join(line.split()).lower()
        if line and not line.startswith(("#", "//", "*", "/*")):
            kept.append(line)
    return hashlib.sha256("\n".join(kept).encode("utf-8")).hexdigest()


def repo_name(source: Source) -> str:
    return source.name.split(":", 1)[-1].removesuffix("-test")


def assign_units(files: list[tuple[str, int]], max_bytes: int = UNIT_MAX_BYTES) -> dict[str, str]:
    """Split unit of each path: its shallowest enclosing directory subtree of ≤ max_bytes.

    Files directly inside a directory that is too big (and whose own subtree is not a unit)
    form the unit "dir/*". A file at the source root is its own unit; an npm scope
    ("@npmcli/") is never a unit by itself.
    """
    subtree: Counter[str] = Counter()
    for path, size in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            subtree["/".join(parts[:depth])] += size
    units = {}
    for path, _ in files:
        parts = path.split("/")
        first = 2 if parts[0].startswith("@") else 1  # an npm scope is not a package
        unit = next(
            ("/".join(parts[:d]) for d in range(first, len(parts)) if subtree["/".join(parts[:d])] <= max_bytes),
            "/".join(parts[:-1]) + "/*" if len(parts) > 1 else path,
        )
        units[path] = unit
    return units


def choose_heldout(files: list[CorpusFile], holdout_ok: dict[str, bool], fraction: float) -> set[str]:
    """Units held out: per language, hash-ordered eligible units until `fraction` of its bytes."""
    by_lang: dict[str, dict[str, list[CorpusFile]]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        by_lang[f.lang][f.unit].append(f)
    held: set[str] = set()
    for lang, units in sorted(by_lang.items()):
        total = sum(len(f.text.encode()) for fs in units.values() for f in fs)
        target, taken = fraction * total, 0
        eligible = [
            u for u, fs in units.items()
            if holdout_ok[fs[0].source] and len(fs) >= MIN_HELDOUT_UNIT_FILES
            and max(Counter(f.package for f in fs).values()) >= 2
        ]  # fmt: skip
        for unit in sorted(eligible, key=lambda u: stable_hash(f"{SPLIT_SALT}:{lang}:{u}")):
            size = sum(len(f.text.encode()) for f in units[unit])
            if taken >= target:
                break
            if taken and taken + size > 1.5 * target:
                continue
            held.add(unit)
            taken += size
    return held


def _tests_of_heldout_stdlib(path: str, held_stdlib_tops: set[str]) -> bool:
    return any(part.removesuffix(".py").removeprefix("test_") in held_stdlib_tops for part in path.split("/")[1:2])


def build_corpus(sources: list[Source], fraction: float = HELDOUT_FRACTION) -> tuple[list[CorpusFile], dict]:
    """Filtered, deduplicated files with their split, plus drop statistics."""
    dropped: Counter[str] = Counter()
    seen_exact: set[str] = set()
    seen_near: set[str] = set()
    files: list[CorpusFile] = []
    for source in sources:
        kept: list[tuple[str, str]] = []
        for rel in source.files:
            try:
                text = (source.root / rel).read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                dropped["not_utf8"] += 1
                continue
            if (reason := reject_reason(rel, text)) is not None:
                dropped[reason] += 1
                continue
            exact, near = hashlib.sha256(text.encode()).hexdigest(), normalised_hash(text)
            if exact in seen_exact or near in seen_near:
                dropped["duplicate_exact" if exact in seen_exact else "duplicate_near"] += 1
                continue
            seen_exact.add(exact)
            seen_near.add(near)
            kept.append((rel, text))
        units = assign_units([(rel, len(text.encode())) for rel, text in kept])
        for rel, text in kept:
            lang = EXTENSIONS[Path(rel).suffix]
            package = rel.rsplit("/", 1)[0] if "/" in rel else ""
            files.append(
                CorpusFile(rel, repo_name(source), package, f"{source.name}:{units[rel]}", lang, source.name, text)
            )
    holdout_ok = {s.name: s.holdout_ok for s in sources}
    held = choose_heldout(files, holdout_ok, fraction)
    held_stdlib = {u.split(":", 1)[1].split("/")[0].removesuffix(".py") for u in held if u.startswith("cpython:")}
    out = []
    for f in files:
        if f.source == "cpython-test" and _tests_of_heldout_stdlib(f.path, held_stdlib):
            dropped["test_of_heldout"] += 1
            continue
        f.split = "heldout" if f.unit in held else "train"
        out.append(f)
    return out, {"dropped": dict(sorted(dropped.items())), "heldout_units": sorted(held)}


def manifest(files: list[CorpusFile], sources: list[Source], info: dict, params: dict) -> dict:
    stats: dict = defaultdict(lambda: defaultdict(lambda: {"files": 0, "bytes": 0}))
    per_source: dict = defaultdict(lambda: {"files": 0, "bytes": 0})
    for f in files:
        n = len(f.text.encode())
        for key in (f.split, "all"):
            stats[f.lang][key]["files"] += 1
            stats[f.lang][key]["bytes"] += n
        per_source[f.source]["files"] += 1
        per_source[f.source]["bytes"] += n
    return {
        "command": "python -m deepfim.engine.training.corpus " + " ".join(params.get("argv", [])),
        "params": {k: v for k, v in params.items() if k != "argv"},
        "languages": {lang: dict(v) for lang, v in sorted(stats.items())},
        "sources": [
            {
                "name": s.name,
                "version": s.version,
                "licence": s.licence,
                "licence_file": s.licence_file,
                "holdout_ok": s.holdout_ok,
                "candidates": len(s.files),
                **per_source[s.name],
            }
            for s in sources
        ],  # fmt: skip
        "dropped": info["dropped"],
        "heldout_units": info["heldout_units"],
        "split_rule": __doc__.split("Rules (the model card quotes them from `manifest.json`):")[1]
        .split("Output:")[0]
        .strip(),
    }


def write_corpus(out: Path, files: list[CorpusFile], meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "heldout"):
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for f in files:
                if f.split == split:
                    fh.write(json.dumps(asdict(f), ensure_ascii=False) + "\n")
    (out / "manifest.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_corpus(corpus_dir: str | Path, split: str) -> list[CorpusFile]:
    """The files of one split ("train" or "heldout") of a built corpus."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: build it with `python -m deepfim.engine.training.corpus --out {corpus_dir}`"
        )
    with open(path, encoding="utf-8") as fh:
        return [CorpusFile(**json.loads(line)) for line in fh]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/corpus"), help="output folder (git-ignored data/)")
    parser.add_argument("--npm-dir", type=Path, default=Path("data/npm"), help="where the pinned npm packages go")
    parser.add_argument("--no-npm", action="store_true", help="skip the npm TypeScript packages")
    parser.add_argument("--heldout-fraction", type=float, default=HELDOUT_FRACTION)
    args = parser.parse_args(argv)
    if not 0.0 < args.heldout_fraction < 0.5:
        raise SystemExit(f"--heldout-fraction must be in (0, 0.5), got {args.heldout_fraction}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    sources = all_sources(None if args.no_npm else args.npm_dir)
    files, info = build_corpus(sources, args.heldout_fraction)
    params = {"argv": argv, "heldout_fraction": args.heldout_fraction, "unit_max_bytes": UNIT_MAX_BYTES}
    meta = manifest(files, sources, info, params)
    write_corpus(args.out, files, meta)
    log.info("wrote %d files to %s in %.0f s", len(files), args.out, time.perf_counter() - start)
    print(json.dumps({"languages": meta["languages"], "dropped": meta["dropped"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
