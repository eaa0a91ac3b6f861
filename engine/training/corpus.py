"""Build the training corpus: filter, deduplicate, split by package, write JSONL + manifest.

    python -m deepfim.engine.training.corpus --out data/corpus

Rules (the model card quotes them from `manifest.json`):

* Filters: not UTF-8, near-empty (< 64 non-blank chars), huge (> 200 kB), minified or data
  (a line > 500 chars, mean line > 100 chars, < 25 % alphanumeric), generated (a
  "this file was generated"/"do not edit" marker in the first 15 lines), Python that does not parse as 3.11.
* Deduplication, first source wins (stdlib, then PyPI site-packages, then npm, then the
  PyPI sdists): exact (sha256 of the text) and near-exact (sha256 of the text without
  blank lines, comment-only lines, indentation and case).
* Kept out: the evaluation repositories (``data/eval/repos``) and the bundled example
  (``examples/``). A source that is one of them is refused; a file whose text is an exact
  or near-exact copy of one of their files, or that sits in a folder named like an
  evaluation repository's package, is dropped.
* Split unit: the largest directory subtree of a package that holds ≤ 1 MB (``email``,
  ``sympy/core``, ``rxjs/src/internal/operators``); a top-level module file is its own unit.
  Per language, units with ≥ 3 files, in a fixed hash order, are held out until ~6 % of
  the language's bytes. Whole units are held out, so a held-out file's package siblings are
  held out too (cross-file evaluation stays inside unseen code). Sources marked train-only
  (CPython's `test/`, transformers) are never held out, and CPython tests of a held-out
  stdlib package (``test/test_email/…``) are dropped.
* Generations: the sources the shipped model was trained on (generation 1) keep the 30
  held-out units of that build (pinned in `split.py`); the PyPI sdists (generation 2)
  have their own units held out by the same rule over their own bytes.

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

from deepfim.engine.training.sdist_sources import EVAL_PACKAGES, fetch_eval_repos, is_eval_repo
from deepfim.engine.training.sdists import SdistError
from deepfim.engine.training.sources import EXTENSIONS, Source, _walk, all_sources
from deepfim.engine.training.split import (  # noqa: F401  (assign_units, choose_heldout: public here too)
    HELDOUT_FRACTION,
    PINNED_HELDOUT,
    UNIT_MAX_BYTES,
    assign_units,
    choose_heldout,
    heldout_by_generation,
)

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"  # the bundled example workspaces

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


def _tests_of_heldout_stdlib(path: str, held_stdlib_tops: set[str]) -> bool:
    return any(part.removesuffix(".py").removeprefix("test_") in held_stdlib_tops for part in path.split("/")[1:2])


def _takes_from(source: Source, tree: Path) -> bool:
    root = source.root.resolve()
    if root == tree or tree in root.parents:
        return True
    return root in tree.parents and any((root / f).resolve().is_relative_to(tree) for f in source.files)


def refuse_excluded_sources(sources: list[Source], excluded_trees: list[Path]) -> None:
    """ValueError when a source is an evaluation repository or takes files of an excluded tree."""
    trees = [t.resolve() for t in excluded_trees if t.exists()]
    for source in sources:
        if is_eval_repo(repo_name(source)):
            raise ValueError(f"source {source.name!r} is an evaluation repository; it can never be a training source")
        for tree in trees:
            if _takes_from(source, tree):
                raise ValueError(f"source {source.name!r} takes files from {tree}, which must stay out of training")


def excluded_hashes(excluded_trees: list[Path]) -> set[str]:
    """Exact and near-exact hashes of every source file under the excluded trees."""
    hashes = set()
    for tree in excluded_trees:
        for rel in _walk(tree, ".") if tree.is_dir() else []:
            text = (tree / rel).read_bytes().decode("utf-8", errors="replace")
            hashes |= {hashlib.sha256(text.encode()).hexdigest(), normalised_hash(text)}
    # A file of comments and blank lines only has the near-hash of no code at all; it
    # cannot leak code, and banning it would drop every such file of every source.
    return hashes - {normalised_hash("")}


def build_corpus(
    sources: list[Source],
    fraction: float = HELDOUT_FRACTION,
    pinned: dict[int, frozenset[str]] | None = None,
    excluded_trees: list[Path] = (),
) -> tuple[list[CorpusFile], dict]:
    """Filtered, deduplicated files with their split, plus drop statistics.

    `pinned` maps a source generation to its fixed held-out units (`split.PINNED_HELDOUT`);
    other generations use the hash rule. Files under `excluded_trees` (the evaluation
    repositories, the bundled example) never enter the corpus, nor does any copy of them.
    """
    refuse_excluded_sources(sources, list(excluded_trees))
    banned = excluded_hashes(list(excluded_trees))
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
            if exact in banned or near in banned or EVAL_PACKAGES.intersection(rel.split("/")[:-1]):
                dropped["eval_or_example_copy"] += 1
                continue
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
    generation = {s.name: s.generation for s in sources}
    held = heldout_by_generation(files, generation, holdout_ok, fraction, pinned or {})
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
                "generation": s.generation,
                "sha256": s.sha256,
                "url": s.url,
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
    parser.add_argument("--sdist-dir", type=Path, default=Path("data/sdists"), help="where the PyPI sdists go")
    parser.add_argument("--no-sdists", action="store_true", help="skip the PyPI sdists and evaluation repositories")
    parser.add_argument(
        "--eval-dir", type=Path, default=Path("data/eval/repos"), help="evaluation repositories (kept out of training)"
    )
    parser.add_argument("--heldout-fraction", type=float, default=HELDOUT_FRACTION)
    args = parser.parse_args(argv)
    if not 0.0 < args.heldout_fraction < 0.5:
        raise SystemExit(f"--heldout-fraction must be in (0, 0.5), got {args.heldout_fraction}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    eval_repos = []
    if not args.no_sdists:
        try:
            eval_repos = fetch_eval_repos(args.eval_dir)
        except SdistError as exc:
            log.error("evaluation repositories not fetched (%s); only their names are kept out", exc)
    sources = all_sources(None if args.no_npm else args.npm_dir, None if args.no_sdists else args.sdist_dir)
    pinned = PINNED_HELDOUT if args.heldout_fraction == HELDOUT_FRACTION else {}
    if not pinned:
        log.warning("--heldout-fraction is not %s: generation 1's held-out units are re-chosen", HELDOUT_FRACTION)
    excluded = [args.eval_dir, EXAMPLES_DIR]
    files, info = build_corpus(sources, args.heldout_fraction, pinned, excluded)
    params = {"argv": argv, "heldout_fraction": args.heldout_fraction, "unit_max_bytes": UNIT_MAX_BYTES}
    params["excluded_trees"] = [str(t) for t in excluded]
    meta = manifest(files, sources, info, params)
    meta["eval_repos"] = eval_repos
    write_corpus(args.out, files, meta)
    log.info("wrote %d files to %s in %.0f s", len(files), args.out, time.perf_counter() - start)
    print(json.dumps({"languages": meta["languages"], "dropped": meta["dropped"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
