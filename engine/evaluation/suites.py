"""Where evaluation repositories come from. Each is a folder on disk, indexed by the same
`Workspace` the language server uses.

* heldout: the held-out split units of the training corpus (whole package subtrees the
  model never saw, e.g. CPython's `concurrent`, `wsgiref`), written out of
  `data/corpus/heldout.jsonl` into `data/eval/heldout/<unit>/`. Without a built corpus (a
  fresh clone), the held-out CPython packages are taken from this interpreter's standard
  library: `HELDOUT_STDLIB` lists them (the corpus build holds the same ones out).
* repos: whole real repositories that are not in the training corpus, fetched once from
  PyPI source distributions into `data/eval/repos/<name>/` (`deepfim eval --fetch`).
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

HELDOUT_STDLIB = ("concurrent", "wsgiref")  # CPython packages of the held-out split (manifest.json)
MAX_FILES_PER_REPO = 400


@dataclass(frozen=True)
class EvalRepo:
    name: str
    suite: str
    root: Path

    def files(self) -> list[tuple[str, str]]:
        """(workspace-relative path, text) of its source files."""
        out = []
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".ts", ".js") and "__pycache__" not in path.parts:
                try:
                    out.append((path.relative_to(self.root).as_posix(), path.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError):
                    continue
            if len(out) >= MAX_FILES_PER_REPO:
                break
        return out


def _write(root: Path, files: dict[str, str]) -> None:
    marker = root / ".deepfim-eval"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    marker.write_text("written by deepfim eval\n", encoding="utf-8")


def heldout_repos(corpus_dir: Path, out_dir: Path, langs: tuple[str, ...]) -> list[EvalRepo]:
    """One repository per held-out unit of the corpus (or the standard library's, see above)."""
    heldout = corpus_dir / "heldout.jsonl"
    units: dict[str, dict[str, str]] = defaultdict(dict)
    if heldout.is_file():
        with heldout.open(encoding="utf-8") as fh:
            for line in fh:
                f = json.loads(line)
                if f["lang"] in langs:
                    units[f["unit"]][f["path"]] = f["text"]
    else:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        for package in HELDOUT_STDLIB:
            for path in sorted((stdlib / package).rglob("*.py")):
                units[f"cpython:{package}"][path.relative_to(stdlib).as_posix()] = path.read_text(encoding="utf-8")
    repos = []
    for unit in sorted(units):
        name = unit.replace(":", "-").replace("/", "-").replace("*", "all")
        root = out_dir / name
        _write(root, units[unit])
        repos.append(EvalRepo(name, "heldout", root))
    return repos


def fetched_repos(repos_dir: Path) -> list[EvalRepo]:
    """The evaluation repositories fetched with `deepfim eval --fetch` (none before that)."""
    if not repos_dir.is_dir():
        return []
    return [EvalRepo(p.name, "repos", p) for p in sorted(repos_dir.iterdir()) if p.is_dir()]
