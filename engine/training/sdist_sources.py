"""Training sources and evaluation repositories taken from pinned PyPI source distributions.

Each allow-listed sdist is a whole repository as its authors released it: the package and,
where the sdist ships them, its tests (real repositories include tests). Paths stay as in
the repository (``src/black/linegen.py``, ``tests/test_client.py``) with the distribution
name as the repository name. None of them is in `sources.PYPI_ALLOW` (those come from the
installed site-packages), and none is an evaluation repository.

The evaluation repositories (`EVAL_REPOS`) are fetched the same way into
``data/eval/repos/<name>/`` and never become training sources: `sdist_sources` and the
corpus builder both refuse them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

from deepfim.engine.training.sdists import SdistError, fetch_sdist, stderr_progress
from deepfim.engine.training.sources import Source, _cap_by_directory, _walk

log = logging.getLogger(__name__)

SDIST_CAP = 2_000_000
SDIST_GENERATION = 2

# distribution -> (pinned version, folders or files taken from the sdist's top, byte cap).
# All MIT / BSD / Apache-2.0 (checked again from PKG-INFO and the licence file at fetch).
SDIST_ALLOW: dict[str, tuple[str, tuple[str, ...], int]] = {
    "httpx": ("0.28.1", ("httpx", "tests"), SDIST_CAP),
    "httpcore": ("1.0.9", ("httpcore", "tests"), SDIST_CAP),
    "starlette": ("1.10.0", ("starlette", "tests"), SDIST_CAP),
    "uvicorn": ("0.54.0", ("uvicorn", "tests"), SDIST_CAP),
    "black": ("26.10.1", ("src", "tests"), SDIST_CAP),
    "isort": ("9.0.2", ("isort", "tests"), SDIST_CAP),
    "pyflakes": ("4.1.0", ("pyflakes",), SDIST_CAP),
    "pycodestyle": ("2.15.0", ("pycodestyle.py", "tests"), SDIST_CAP),
    "flake8": ("7.5.0", ("src",), SDIST_CAP),
    "mccabe": ("0.7.0", ("mccabe.py", "test_mccabe.py"), SDIST_CAP),
    "tornado": ("6.6.1", ("tornado",), SDIST_CAP),
    "sqlalchemy": ("2.1.9", ("lib", "test"), 4_000_000),
    "alembic": ("1.20.1", ("alembic", "tests"), SDIST_CAP),
    "redis": ("8.1.0", ("redis", "tests"), SDIST_CAP),
    "dask": ("2026.8.0", ("dask",), SDIST_CAP),
    "toolz": ("1.2.0", ("toolz", "tlz"), SDIST_CAP),
    "cachetools": ("8.0.0", ("src", "tests"), SDIST_CAP),
    "tabulate": ("0.10.0", ("tabulate", "test"), SDIST_CAP),
    "humanize": ("4.17.0", ("src", "tests"), SDIST_CAP),
    "arrow": ("1.4.0", ("arrow", "tests"), SDIST_CAP),
    "pluggy": ("1.7.0", ("src", "testing"), SDIST_CAP),
    "iniconfig": ("2.3.1", ("src", "testing"), SDIST_CAP),
    "tomli": ("2.5.0", ("src",), SDIST_CAP),
    "tomlkit": ("0.15.2", ("tomlkit", "tests"), SDIST_CAP),
    "platformdirs": ("4.14.5", ("src", "tests"), SDIST_CAP),
    "filelock": ("4.2.11", ("src", "tests"), SDIST_CAP),
    "build": ("1.6.1", ("src", "tests"), SDIST_CAP),
    "wheel": ("0.48.0", ("src", "tests"), SDIST_CAP),
    "invoke": ("3.0.3", ("invoke", "tests"), SDIST_CAP),
    "fabric": ("3.2.3", ("fabric", "tests"), SDIST_CAP),
    "itsdangerous": ("2.2.0", ("src", "tests"), SDIST_CAP),
    "markupsafe": ("3.0.4", ("src", "tests"), SDIST_CAP),
    "structlog": ("26.1.0", ("src", "tests"), SDIST_CAP),
    "celery": ("5.7.0", ("celery", "t"), SDIST_CAP),
    "kombu": ("5.7.0", ("kombu", "t"), SDIST_CAP),
}

# Whole real repositories for evaluation, never trained on: distribution -> (pinned
# version, import packages). A training file inside a folder named like one of these
# packages is dropped by the corpus builder even when its text differs.
EVAL_REPOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "marshmallow": ("4.4.0", ("marshmallow",)),
    "more-itertools": ("11.2.1", ("more_itertools",)),
    "boltons": ("26.2.0", ("boltons",)),
}
EVAL_PACKAGES = frozenset(p for _, pkgs in EVAL_REPOS.values() for p in pkgs)


def normalise_name(name: str) -> str:
    """PEP 503 form of a distribution name: ``More_Itertools`` -> ``more-itertools``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_eval_repo(name: str) -> bool:
    """Whether a distribution, import package or repository name is an evaluation repository."""
    norm = normalise_name(name)
    return norm in {normalise_name(n) for n in EVAL_REPOS} | {normalise_name(p) for p in EVAL_PACKAGES}


def sdist_sources(cache_dir: Path, progress: Callable[[str], None] | None = stderr_progress) -> list[Source]:
    """The allow-listed sdists as generation-2 sources (fetched into cache_dir once).

    A package that cannot be fetched or whose licence is refused is skipped with an error
    in the log (its message says why), so one unreachable package never stops a build.
    """
    out = []
    for name, (version, tops, cap) in SDIST_ALLOW.items():
        if is_eval_repo(name):
            raise ValueError(f"sdist {name!r} is an evaluation repository; it can never be a training source")
        try:
            got = fetch_sdist(name, version, Path(cache_dir) / f"{name}-{version}", progress)
        except SdistError as exc:
            log.error("sdist:%s skipped: %s", name, exc)
            continue
        files = [f for top in tops if (got.root / top).exists() for f in _walk(got.root, top)]
        files = _cap_by_directory(got.root, files, cap, salt=name)
        licence_file = str(got.root / got.licence_file) if got.licence_file else ""
        out.append(
            Source(
                f"sdist:{name}", got.root, files, got.licence, licence_file, version,
                generation=SDIST_GENERATION, sha256=got.sha256, url=got.url,
            )
        )  # fmt: skip
    return out


def fetch_eval_repos(dest: Path, progress: Callable[[str], None] | None = stderr_progress) -> list[dict]:
    """Fetch the evaluation repositories into dest/<name>/ and write dest/manifest.json.

    Returns one record per repository: name, version, licence, licence file, sha256, url,
    and its Python files and lines. Raises SdistError when one cannot be fetched.
    """
    dest = Path(dest)
    records = []
    for name, (version, _) in EVAL_REPOS.items():
        got = fetch_sdist(name, version, dest / name, progress)
        py_files = [f for f in _walk(got.root, ".") if f.endswith(".py")]
        lines = sum(len((got.root / f).read_bytes().splitlines()) for f in py_files)
        records.append(
            {
                "name": name,
                "version": version,
                "licence": got.licence,
                "licence_file": got.licence_file,
                "sha256": got.sha256,
                "url": got.url,
                "path": str(got.root),
                "files": len(py_files),
                "lines": lines,
            }
        )
    (dest / "manifest.json").write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return records


def main() -> int:
    """``python -m deepfim.engine.training.sdist_sources [DEST]``: fetch the evaluation repositories."""
    import sys

    dest = Path(sys.argv[1] if len(sys.argv) > 1 else "data/eval/repos")
    for r in fetch_eval_repos(dest):
        print(f"{r['name']} {r['version']} ({r['licence']}): {r['files']} files, {r['lines']} lines at {r['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
