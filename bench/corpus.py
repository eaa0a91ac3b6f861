"""Real code for the benchmarks, deterministic: the running interpreter's CPython standard
library (present wherever the project's venv is, offline), and the evaluation repositories
(`EVAL_REPOS`: real repositories outside the embedded model's training corpus, which holds the
standard library), fetched once from PyPI as `deepfim eval --fetch` fetches them."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

STDLIB = Path(sysconfig.get_paths()["stdlib"])
EVAL_REPOS_DIR = Path(__file__).resolve().parents[1] / "data" / "eval" / "repos"  # `deepfim eval`'s default


def stdlib_files(limit_bytes: int) -> list[tuple[str, str]]:
    """(relative path, text) of stdlib modules, sorted by path (top level first, then packages,
    tests excluded), up to about `limit_bytes` of text."""
    paths = sorted(STDLIB.glob("*.py")) + sorted(
        p for p in STDLIB.glob("*/**/*.py") if not {"test", "tests", "site-packages", "idlelib"} & set(p.parts)
    )
    out, total = [], 0
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append((str(path.relative_to(STDLIB)), text))
        total += len(text)
        if total >= limit_bytes:
            break
    return out


def stdlib_token_files(tok, count: int, min_tokens: int) -> list[list[int]]:
    """The first `count` stdlib modules (in `stdlib_files` order) of at least `min_tokens`
    tokens, each as BOS and its token ids: a real file per simulated user or sequence."""
    out = []
    for _, text in stdlib_files(1 << 30):
        ids = tok.encode(text)
        if len(ids) >= min_tokens:
            out.append([tok.special.bos, *ids])
            if len(out) == count:
                return out
    raise ValueError(f"not enough stdlib files of {min_tokens} tokens for {count}")


def packed_ids(tok, budget: int, repo_name: str = "cpython") -> list[int]:
    """A packed repository context of `budget` tokens as the language server lays it out: the
    repository header, then whole stdlib files, each with its file header."""
    from deepfim.engine.model.prompt_format import Prompt, file_segment_ids, repo_header_ids

    prompt = Prompt()
    prompt.add("header", repo_header_ids(tok, repo_name))
    for path, text in stdlib_files(budget * 6):
        prompt.add("file", file_segment_ids(tok, path, tok.encode(text)), path)
        if len(prompt.ids) >= budget:
            break
    ids = prompt.ids[:budget]
    if len(ids) < budget:
        raise ValueError(f"the standard library at {STDLIB} holds only {len(ids):,} tokens (< {budget:,})")
    return ids


def copy_stdlib(dest: Path) -> Path:
    """A private copy of the whole standard library (no tests, no site-packages: ~600 files) as
    one workspace folder: a repository of the size real ones are."""
    root = dest / "Lib"
    skip = ("__pycache__", "test", "tests", "site-packages", "idlelib", "lib2to3", "ensurepip", "turtledemo")
    shutil.copytree(STDLIB, root, ignore=shutil.ignore_patterns(*skip))
    return root


def copy_package(name: str, dest: Path) -> Path:
    """A private copy of the stdlib package `name` (e.g. "email") as a workspace folder."""
    src = STDLIB / name
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such stdlib package")
    root = dest / name
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("__pycache__", "test", "tests"))
    return root


def copy_eval_repo(name: str, dest: Path) -> Path:
    """A private copy of evaluation repository `name` (its whole source distribution, tests
    included) as a workspace folder, fetched into `EVAL_REPOS_DIR` first if it is not there."""
    from deepfim.engine.training.sdist_sources import EVAL_REPOS
    from deepfim.engine.training.sdists import fetch_sdist

    version, _ = EVAL_REPOS[name]
    fetched = fetch_sdist(name, version, EVAL_REPOS_DIR / name)
    root = dest / name
    shutil.copytree(fetched.root, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root
