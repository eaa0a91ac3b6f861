"""Where the training corpus comes from: permissively licensed code already on this machine.

* CPython 3.11 standard library (PSF-2.0); its `test/` package is a separate, sparse source.
* An allow-list of PyPI distributions installed in the project venv or the pyenv 3.11
  site-packages, each kept only if its metadata declares a permissive licence.
* npm: TypeScript sources/declarations of a few pinned packages (installed into a folder
  under `data/` by `npm install`), and the JavaScript of the system npm's own dependencies.
* Pinned PyPI source distributions, package and tests (`sdist_sources.py`).

Every `Source` carries its licence and licence file so the manifest can list them. Paths
are relative to the source root and start with the package name (``email/message.py``,
``rxjs/src/internal/Observable.ts``): that is the name the file markers show.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# The running interpreter's standard library and its base installation's site-packages (a
# venv's base interpreter: on the development machine a pyenv 3.11); never a fixed path.
STDLIB_ROOT = Path(sysconfig.get_paths()["stdlib"])
PYENV_SITE = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})["purelib"])
SYSTEM_NPM_MODULES = Path("/usr/lib/node_modules/npm/node_modules")

EXTENSIONS = {
    ".py": "python",
    ".ts": "typescript",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
}

# Directories never taken: caches, vendored copies of other packages (they would be
# near-duplicates of another source and leak across the split), nested environments.
SKIP_DIRS = {"__pycache__", "_vendor", "vendor", "vendored", "site-packages", "node_modules", "lib-dynload"}
STDLIB_SKIP_TOP = {"test", "site-packages", "lib-dynload", "ensurepip", "pydoc_data", "turtledemo"}

PERMISSIVE = re.compile(
    r"\b(MIT|BSD|Apache|ISC|PSF|Python Software Foundation|0BSD|Unlicense|BlueOak|Zlib|CNRI|ASL)", re.I
)
COPYLEFT = re.compile(r"\b(GPL|LGPL|AGPL|MPL|EPL|CDDL|Mozilla)", re.I)

# PyPI distribution -> (top-level import packages, byte cap). Caps keep big libraries from
# drowning the rest; they take whole directories in a fixed hash order.
DEFAULT_CAP = 2_500_000
PYPI_ALLOW: dict[str, tuple[tuple[str, ...], int]] = {
    "networkx": (("networkx",), DEFAULT_CAP),
    "pygments": (("pygments",), DEFAULT_CAP),
    "ipython": (("IPython",), DEFAULT_CAP),
    "prompt-toolkit": (("prompt_toolkit",), DEFAULT_CAP),
    "pytest": (("_pytest",), DEFAULT_CAP),
    "trio": (("trio",), DEFAULT_CAP),
    "jedi": (("jedi",), DEFAULT_CAP),
    "parso": (("parso",), DEFAULT_CAP),
    "werkzeug": (("werkzeug",), DEFAULT_CAP),
    "flask": (("flask",), DEFAULT_CAP),
    "jinja2": (("jinja2",), DEFAULT_CAP),
    "click": (("click",), DEFAULT_CAP),
    "attrs": (("attr", "attrs"), DEFAULT_CAP),
    "urllib3": (("urllib3",), DEFAULT_CAP),
    "requests": (("requests",), DEFAULT_CAP),
    "packaging": (("packaging",), DEFAULT_CAP),
    "pyparsing": (("pyparsing",), DEFAULT_CAP),
    "jsonschema": (("jsonschema",), DEFAULT_CAP),
    "traitlets": (("traitlets",), DEFAULT_CAP),
    "python-dateutil": (("dateutil",), DEFAULT_CAP),
    "pydantic": (("pydantic",), DEFAULT_CAP),
    "graphql-core": (("graphql",), DEFAULT_CAP),
    "libcst": (("libcst",), DEFAULT_CAP),
    "pyyaml": (("yaml",), DEFAULT_CAP),
    "sortedcontainers": (("sortedcontainers",), DEFAULT_CAP),
    "wrapt": (("wrapt",), DEFAULT_CAP),
    "referencing": (("referencing",), DEFAULT_CAP),
    "pexpect": (("pexpect",), DEFAULT_CAP),
    "charset-normalizer": (("charset_normalizer",), DEFAULT_CAP),
    "mpmath": (("mpmath",), DEFAULT_CAP),
    "sympy": (("sympy",), 4_000_000),
    "scipy": (("scipy",), 4_000_000),
    "numpy": (("numpy",), 4_000_000),
    "torch": (("torch",), 4_000_000),
    "transformers": (("transformers",), 4_000_000),
    "huggingface-hub": (("huggingface_hub",), DEFAULT_CAP),
    "rich": (("rich",), DEFAULT_CAP),
    "fsspec": (("fsspec",), DEFAULT_CAP),
    "anyio": (("anyio",), DEFAULT_CAP),
    "pygls": (("pygls",), DEFAULT_CAP),
    "cattrs": (("cattrs",), DEFAULT_CAP),
    "typer": (("typer",), DEFAULT_CAP),
    "triton": (("triton",), DEFAULT_CAP),
    "markdown-it-py": (("markdown_it",), DEFAULT_CAP),
    "h11": (("h11",), DEFAULT_CAP),
    "docker": (("docker",), DEFAULT_CAP),
    "boto3": (("boto3",), DEFAULT_CAP),
    "s3transfer": (("s3transfer",), DEFAULT_CAP),
    "moto": (("moto",), DEFAULT_CAP),
}
# transformers copies code between model folders ("Copied from ..."): a held-out model
# folder would have near-copies in training, so it stays train-only.
TRAIN_ONLY_DISTS = {"transformers"}

# npm packages installed for their TypeScript: name -> (version, globs under the package).
NPM_TS_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "typescript": ("5.9.3", ("lib/lib.*.d.ts",)),
    "@types/node": ("22.20.7", ("*.d.ts",)),
    "rxjs": ("7.8.2", ("src/*.ts",)),
    "zod": ("3.25.76", ("src/*.ts",)),
    "immer": ("10.1.1", ("src/*.ts",)),
}


@dataclass
class Source:
    """One origin of files: a root folder, the files taken under it and their licence."""

    name: str  # "cpython", "pypi:flask", "npm:rxjs", ...
    root: Path
    files: list[str] = field(default_factory=list)  # paths relative to root
    licence: str = ""
    licence_file: str = ""
    version: str = ""
    holdout_ok: bool = True  # may its packages be held out for evaluation?
    generation: int = 1  # which split generation it joined (see split.py); sdists are 2
    sha256: str = ""  # of the downloaded archive, for sources fetched from a registry
    url: str = ""


def stable_hash(text: str) -> int:
    """A hash that is the same in every process and on every machine (unlike `hash`)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def is_permissive(licence: str) -> bool:
    return bool(PERMISSIVE.search(licence)) and not COPYLEFT.search(licence)


def _walk(root: Path, top: str, skip: set[str] = SKIP_DIRS) -> list[str]:
    """Source files under root/top (a folder or a single file), relative to root, sorted."""
    start = root / top
    if start.is_file():
        return [top] if start.suffix in EXTENSIONS else []
    out = []
    for path in start.rglob("*"):
        rel = path.relative_to(root)
        if any(part in skip for part in rel.parts[:-1]) or not path.is_file() or path.is_symlink():
            continue
        if path.suffix in EXTENSIONS:
            out.append(rel.as_posix())
    return sorted(out)


def _cap_by_directory(root: Path, files: list[str], cap: int, salt: str) -> list[str]:
    """At most `cap` bytes, taking whole directories in a fixed pseudo-random order."""
    by_dir: dict[str, list[str]] = {}
    for f in files:
        by_dir.setdefault(f.rsplit("/", 1)[0] if "/" in f else "", []).append(f)
    kept, total = [], 0
    for d in sorted(by_dir, key=lambda d: stable_hash(f"{salt}:{d}")):
        size = sum((root / f).stat().st_size for f in by_dir[d])
        if total and total + size > cap:
            continue
        kept += by_dir[d]
        total += size
    return sorted(kept)


def stdlib_sources(root: Path = STDLIB_ROOT, test_fraction: float = 0.2) -> list[Source]:
    """The standard library, plus a deterministic `test_fraction` of its `test/` package."""
    if not root.is_dir():
        log.warning("no CPython stdlib at %s; skipping", root)
        return []
    licence_file = str(root / "LICENSE.txt")
    tops = sorted(p.name for p in root.iterdir() if p.name not in STDLIB_SKIP_TOP and not p.name.startswith("config-"))
    lib = Source("cpython", root, [f for t in tops for f in _walk(root, t)], "PSF-2.0", licence_file, "3.11.7")
    tests = [
        f for f in _walk(root, "test")
        if stable_hash(f"cpython-test:{f}") % 1000 < test_fraction * 1000
    ]  # fmt: skip
    test_src = Source("cpython-test", root, tests, "PSF-2.0", licence_file, "3.11.7", holdout_ok=False)
    return [lib, test_src]


def _dist_info(site: Path, dist: str) -> Path | None:
    norm = re.sub(r"[-_.]+", "_", dist).lower()
    for info in site.glob("*.dist-info"):
        name = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
        if re.sub(r"[-_.]+", "_", name).lower() == norm:
            return info
    return None


def _metadata_licence(info: Path) -> tuple[str, str, str]:
    """(version, licence string, licence file) from a dist-info folder."""
    meta = (info / "METADATA").read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
    fields: dict[str, list[str]] = {}
    for line in meta.splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value.strip())
    classifiers = [c.rsplit("::", 1)[-1].strip() for c in fields.get("Classifier", []) if c.startswith("License ::")]
    licence = (
        (fields.get("License-Expression") or [""])[0] or "; ".join(classifiers) or (fields.get("License") or [""])[0]
    )
    licence_files = sorted(
        p for p in info.rglob("*") if p.is_file() and re.match(r"(LICEN[CS]E|COPYING)", p.name, re.I)
    )
    return (fields.get("Version") or ["?"])[0], licence, str(licence_files[0]) if licence_files else ""


def site_package_dirs() -> list[Path]:
    """The running interpreter's site-packages first (the project venv), then pyenv 3.11's."""
    dirs = [Path(sysconfig.get_paths()["purelib"]), PYENV_SITE]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d not in dirs[:i]]


def pypi_sources(sites: list[Path] | None = None) -> list[Source]:
    """Allow-listed distributions found locally whose metadata declares a permissive licence."""
    out = []
    for dist, (tops, cap) in PYPI_ALLOW.items():
        found = [(site, info) for site in (sites or site_package_dirs()) if (info := _dist_info(site, dist))]
        if not found:
            log.info("pypi:%s not installed; skipping", dist)
            continue
        site, info = found[0]
        version, licence, licence_file = _metadata_licence(info)
        if not is_permissive(licence):
            log.warning("pypi:%s licence %r is not on the permissive list; skipping", dist, licence)
            continue
        files = [f for top in tops if (site / top).exists() for f in _walk(site, top)]
        files = _cap_by_directory(site, files, cap, salt=dist)
        out.append(Source(f"pypi:{dist}", site, files, licence, licence_file, version, dist not in TRAIN_ONLY_DISTS))
    return out


def install_npm_packages(npm_dir: Path) -> Path | None:
    """`npm install` the pinned TypeScript packages into npm_dir (once); its node_modules."""
    modules = npm_dir / "node_modules"
    wanted = [f"{name}@{version}" for name, (version, _) in NPM_TS_PACKAGES.items()]
    have = all(_npm_version(modules / name) == version for name, (version, _) in NPM_TS_PACKAGES.items())
    if have:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        log.warning("npm not found; the corpus will have no TypeScript")
        return None
    npm_dir.mkdir(parents=True, exist_ok=True)
    (npm_dir / "package.json").write_text('{"private": true}\n')
    cmd = [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(npm_dir), *wanted]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        log.warning("npm install failed (%s); the corpus will have no TypeScript", proc.stderr.strip()[-500:])
        return None
    return modules


def _npm_version(package_dir: Path) -> str | None:
    try:
        return json.loads((package_dir / "package.json").read_text(encoding="utf-8")).get("version")
    except (OSError, json.JSONDecodeError):
        return None


def _npm_licence(package_dir: Path) -> str:
    meta = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    lic = meta.get("license") or meta.get("licenses") or ""
    if isinstance(lic, list):
        lic = " OR ".join(x.get("type", "") if isinstance(x, dict) else str(x) for x in lic)
    elif isinstance(lic, dict):
        lic = lic.get("type", "")
    return str(lic)


def _licence_file(package_dir: Path) -> str:
    files = sorted(p for p in package_dir.iterdir() if re.match(r"(LICEN[CS]E|COPYING)", p.name, re.I))
    return str(files[0]) if files else ""


def npm_ts_sources(modules: Path) -> list[Source]:
    out = []
    for name, (version, globs) in NPM_TS_PACKAGES.items():
        pkg = modules / name
        licence = _npm_licence(pkg)
        if not is_permissive(licence):
            log.warning("npm:%s licence %r is not permissive; skipping", name, licence)
            continue
        files = [
            f for f in _walk(modules, name)
            if any(fnmatch.fnmatch(f[len(name) + 1 :], g) for g in globs)
        ]  # fmt: skip
        out.append(Source(f"npm:{name}", modules, files, licence, _licence_file(pkg), version))
    return out


def npm_js_sources(modules: Path = SYSTEM_NPM_MODULES) -> list[Source]:
    """JavaScript of the packages the system npm bundles (each licence checked)."""
    if not modules.is_dir():
        log.warning("no system npm modules at %s; the corpus will have no JavaScript", modules)
        return []
    out = []
    packages = sorted(p for p in modules.iterdir() if p.is_dir() and not p.name.startswith("@"))
    packages += sorted(p for scope in modules.glob("@*") for p in scope.iterdir() if p.is_dir())
    for pkg in packages:
        if not (pkg / "package.json").is_file():
            continue
        licence = _npm_licence(pkg)
        if not is_permissive(licence):
            log.info("npm:%s licence %r is not permissive; skipping", pkg.name, licence)
            continue
        name = pkg.relative_to(modules).as_posix()
        files = [f for f in _walk(modules, name) if not f.endswith((".ts", ".min.js"))]
        if files:
            out.append(Source(f"npm:{name}", modules, files, licence, _licence_file(pkg), _npm_version(pkg) or "?"))
    return out


def all_sources(npm_dir: Path | None, sdist_dir: Path | None = None) -> list[Source]:
    """Every source in a fixed order (the order decides which duplicate survives).

    The PyPI sdists (generation 2) come last, so they never displace a file of the
    sources the shipped model was trained on.
    """
    sources = stdlib_sources() + pypi_sources()
    if npm_dir is not None and (modules := install_npm_packages(npm_dir)) is not None:
        sources += npm_ts_sources(modules)
    sources += npm_js_sources()
    if sdist_dir is not None:
        from deepfim.engine.training.sdist_sources import sdist_sources  # it imports this module

        sources += sdist_sources(sdist_dir)
    log.info(
        "%d sources, %d candidate files (python %s)",
        len(sources),
        sum(len(s.files) for s in sources),
        sys.version.split()[0],
    )
    return sources
