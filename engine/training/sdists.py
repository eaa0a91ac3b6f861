"""Pinned source distributions from PyPI: download, verify, extract safely, check the licence.

Used at corpus-build time only (the registry is reachable when building, never when the
product runs). Nothing is built or executed: the sdist archive is read as data.

* The PyPI JSON API (``/pypi/<name>/<version>/json``) names the sdist and its sha256;
  the download must match it.
* Extraction refuses absolute paths, ``..`` members, links that point out of the tree
  and device files, and goes into a temporary sibling that is renamed when complete, so
  a half-extracted tree is never mistaken for a cached one.
* The licence comes from PKG-INFO (``License-Expression``, else the ``License ::``
  classifiers, else the first line of ``License``) and the licence file it names (or
  LICENSE*/COPYING* at the top). It must pass `sources.is_permissive`; a package without a
  licence file, or whose licence file is a copyleft licence (GPL, LGPL, AGPL, MPL, EPL),
  is refused too.

The extracted tree and a ``.deepfim-sdist.json`` record (name, version, sha256, licence)
are the cache: a second call with the same pin reads the record and downloads nothing.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import json
import posixpath
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from deepfim.engine.training.sources import is_permissive

PYPI_JSON = "https://pypi.org/pypi/{name}/{version}/json"
PYPI_PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
RECORD = ".deepfim-sdist.json"
TIMEOUT_S = 60

# Text that identifies a copyleft licence file, whatever its metadata says.
COPYLEFT_TEXT = re.compile(
    r"GNU (LESSER |LIBRARY |AFFERO )?GENERAL PUBLIC LICEN[CS]E|Mozilla Public License|Eclipse Public License", re.I
)
LICENCE_FILE = re.compile(r"(LICEN[CS]E|COPYING)", re.I)


class SdistError(Exception):
    """A pinned sdist could not be used; the message says which package and why."""


class PackageNotFound(SdistError):
    pass


class NoSdist(SdistError):
    pass


class ChecksumMismatch(SdistError):
    pass


class UnsafeArchive(SdistError):
    pass


class LicenceRefused(SdistError):
    pass


@dataclass
class FetchedSdist:
    """An extracted source distribution and where its licence was read."""

    name: str
    version: str
    root: Path  # the extracted tree (PKG-INFO at its top)
    sha256: str
    url: str
    licence: str
    licence_file: str  # relative to root


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _pypi_json(url: str, what: str) -> dict | None:
    """The JSON at url, or None when PyPI answers 404."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise SdistError(f"{what}: PyPI answered HTTP {exc.code} for {url}") from exc
    except (urllib.error.URLError, TimeoutError) as exc:
        raise SdistError(f"{what}: PyPI is not reachable ({exc})") from exc


def sdist_release(name: str, version: str) -> tuple[str, str]:
    """(url, sha256) of the sdist of name==version, from the PyPI JSON API.

    The release endpoint is asked first; some PyPI mirrors serve only the project
    endpoint, whose ``releases`` hold the same file list (with URLs relative to it).
    """
    what = f"{name}=={version}"
    url = PYPI_JSON.format(name=name, version=version)
    meta = _pypi_json(url, what)
    files = meta.get("urls", []) if meta is not None else None
    if files is None:
        url = PYPI_PROJECT_JSON.format(name=name)
        if (project := _pypi_json(url, what)) is None:
            raise PackageNotFound(f"{what}: no package {name!r} on PyPI")
        if version not in project.get("releases", {}):
            raise PackageNotFound(f"{what}: PyPI has no version {version!r} of {name}")
        files = project["releases"][version]
    sdists = [f for f in files if f.get("packagetype") == "sdist"]
    if not sdists:
        raise NoSdist(f"{what}: PyPI has no source distribution (only wheels)")
    return urllib.parse.urljoin(url, sdists[0]["url"]), sdists[0]["digests"]["sha256"]


def download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return resp.read()
    except (urllib.error.URLError, TimeoutError) as exc:
        raise SdistError(f"download of {url} failed ({exc})") from exc


def verify_sha256(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.lower():
        raise ChecksumMismatch(f"{what}: sha256 {actual} does not match the registry's {expected}")


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name:
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' component"
    if member.isdev() or member.isfifo():
        return "a device or fifo"
    if member.issym() or member.islnk():
        target = member.linkname
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return f"a link out of the tree ({target!r})"
    return None


def safe_extract(archive: bytes, dest: Path, what: str) -> Path:
    """Extract a .tar(.gz|.bz2|.xz) into dest (which must not exist); the single top folder.

    Raises UnsafeArchive, without writing anything, when any member is unsafe.
    """
    try:
        tar = tarfile.open(fileobj=io.BytesIO(archive), mode="r:*")
    except tarfile.TarError as exc:
        raise UnsafeArchive(f"{what}: not a tar archive ({exc})") from exc
    with tar:
        members = tar.getmembers()
        for member in members:
            if (reason := _unsafe_reason(member)) is not None:
                raise UnsafeArchive(f"{what}: member {member.name!r} is {reason}; refusing the archive")
        tops = {m.name.split("/", 1)[0] for m in members if m.name not in ("", ".")}
        if len(tops) != 1:
            raise UnsafeArchive(f"{what}: expected one top folder, found {sorted(tops)[:5]}")
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # filter="data" repeats the checks above inside tarfile itself and drops modes
        # such as setuid; regular files, folders and in-tree links are all an sdist holds.
        tar.extractall(tmp, filter="data")
    (tmp / tops.pop()).rename(dest)
    tmp.rmdir()
    return dest


def read_licence(root: Path) -> tuple[str, str]:
    """(licence, licence file relative to root) from an extracted sdist's PKG-INFO."""
    pkg_info = root / "PKG-INFO"
    if not pkg_info.is_file():
        raise LicenceRefused(f"{root.name}: no PKG-INFO, so no declared licence")
    meta = email.parser.HeaderParser().parsestr(pkg_info.read_text(encoding="utf-8", errors="replace"))
    classifiers = [c.rsplit("::", 1)[-1].strip() for c in meta.get_all("Classifier", []) if c.startswith("License ::")]
    first_line = (meta.get("License") or "").strip().splitlines()[:1]
    licence = (meta.get("License-Expression") or "").strip() or "; ".join(classifiers) or "".join(first_line)
    # License-File may also name AUTHORS or NOTICE files; the licence text is the one
    # called LICENSE/COPYING, wherever PKG-INFO lists it.
    named = [f for f in meta.get_all("License-File", []) if (root / f).is_file()]
    top = sorted(p.name for p in root.iterdir() if p.is_file() and LICENCE_FILE.match(p.name))
    licence_files = [f for f in named if LICENCE_FILE.match(Path(f).name)] + top
    return licence, (licence_files or [""])[0]


def check_licence(root: Path, what: str) -> tuple[str, str]:
    """The permissive licence of an extracted sdist, or LicenceRefused."""
    licence, licence_file = read_licence(root)
    if not is_permissive(licence):
        raise LicenceRefused(f"{what}: licence {licence!r} is not on the permissive list")
    if not licence_file:
        raise LicenceRefused(f"{what}: no LICENSE/COPYING file in the sdist, so no licence text to record")
    text = (root / licence_file).read_text(encoding="utf-8", errors="replace")
    if match := COPYLEFT_TEXT.search(text):
        raise LicenceRefused(f"{what}: {licence_file} is a copyleft licence ({match.group(0)!r})")
    return licence, licence_file


def _cached(target: Path, name: str, version: str) -> FetchedSdist | None:
    try:
        record = json.loads((target / RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("name") != name or record.get("version") != version:
        return None
    return FetchedSdist(**{**record, "root": target})


def fetch_sdist(
    name: str, version: str, target: Path, progress: Callable[[str], None] | None = stderr_progress
) -> FetchedSdist:
    """name==version's sdist extracted at `target` (downloaded unless already cached there).

    Raises a subclass of SdistError: PackageNotFound, NoSdist, ChecksumMismatch,
    UnsafeArchive or LicenceRefused (a refused tree is removed again).
    """
    say = progress or (lambda line: None)
    what = f"{name}=={version}"
    if (hit := _cached(target, name, version)) is not None:
        hit.licence, hit.licence_file = check_licence(target, what)  # the rule may be newer than the cache
        say(f"sdist {what}: cached at {target} ({hit.licence})")
        return hit
    url, sha256 = sdist_release(name, version)
    say(f"sdist {what}: downloading {url.rsplit('/', 1)[-1]}")
    data = download(url)
    verify_sha256(data, sha256, what)
    if target.exists():
        if not (target / RECORD).is_file():  # never delete a folder this module did not write
            raise SdistError(f"{what}: {target} exists and is not a fetched sdist; move it away first")
        shutil.rmtree(target)  # the tree of another pin
    target.parent.mkdir(parents=True, exist_ok=True)
    safe_extract(data, target, what)
    try:
        licence, licence_file = check_licence(target, what)
    except LicenceRefused:
        shutil.rmtree(target)
        raise
    fetched = FetchedSdist(name, version, target, sha256, url, licence, licence_file)
    record = {k: v for k, v in asdict(fetched).items() if k != "root"}
    (target / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    say(f"sdist {what}: {len(data) / 1e6:.2f} MB, sha256 ok, licence {licence} ({licence_file or 'no file'})")
    return fetched
