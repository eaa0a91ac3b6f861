"""PyPI sdists: safe extraction, the licence rule, checksums, and the fetch through a local index.

The "registry" here is a real HTTP server on 127.0.0.1 serving a PyPI-shaped JSON API and
tarballs built in tmp_path; nothing leaves the machine. `test_real_pypi_sdist` is the one
test that reaches PyPI, only when DEEPFIM_NETWORK_TESTS=1 (skipped otherwise).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading

import pytest

from deepfim.engine.training import sdists
from deepfim.engine.training.sdists import (
    RECORD,
    ChecksumMismatch,
    LicenceRefused,
    NoSdist,
    PackageNotFound,
    UnsafeArchive,
    check_licence,
    fetch_sdist,
    safe_extract,
)

MIT_TEXT = "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\n"
GPL_TEXT = "                    GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007\n"
CODE = "def add(a, b):\n    return a + b\n"


def pkg_info(**fields: str | list[str]) -> str:
    lines = ["Metadata-Version: 2.4", "Name: demo", "Version: 1.0"]
    for key, value in fields.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{key.replace('_', '-')}: {v}")
    return "\n".join(lines) + "\n\n"


def make_tar(members: dict[str, str], links: dict[str, tuple[str, bytes]] = (), fmt: str = "w:gz") -> bytes:
    """A tarball of text files, plus links: name -> (target, tarfile.SYMTYPE or LNKTYPE)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=fmt) as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (target, kind) in dict(links).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buf.getvalue()


def demo_sdist(licence_meta: str = "MIT", licence_text: str = MIT_TEXT) -> bytes:
    return make_tar(
        {
            "demo-1.0/PKG-INFO": pkg_info(License_Expression=licence_meta, License_File="LICENSE"),
            "demo-1.0/LICENSE": licence_text,
            "demo-1.0/demo/__init__.py": CODE,
            "demo-1.0/tests/test_demo.py": "from demo import add\n",
        }
    )


@pytest.mark.parametrize(
    ("members", "links", "why"),
    [
        ({"pkg-1.0/../evil.py": "x"}, {}, "'..'"),
        ({"/etc/evil.py": "x"}, {}, "absolute"),
        ({"pkg-1.0/a.py": "x"}, {"pkg-1.0/out": ("../../etc/passwd", tarfile.SYMTYPE)}, "link out of the tree"),
        ({"pkg-1.0/a.py": "x"}, {"pkg-1.0/abs": ("/etc/passwd", tarfile.SYMTYPE)}, "link out of the tree"),
        ({"pkg-1.0/a.py": "x"}, {"pkg-1.0/hard": ("../outside", tarfile.LNKTYPE)}, "link out of the tree"),
    ],
)
def test_unsafe_members_refuse_the_whole_archive(tmp_path, members, links, why):
    dest = tmp_path / "out" / "pkg"
    with pytest.raises(UnsafeArchive, match=why):
        safe_extract(make_tar(members, links), dest, "pkg==1.0")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written
    assert not (tmp_path / "etc").exists() and not (tmp_path / "evil.py").exists()


def test_safe_archive_extracts_its_top_folder_with_in_tree_links(tmp_path):
    archive = make_tar(
        {"pkg-1.0/pkg/a.py": CODE, "pkg-1.0/README": "hi\n"},
        {"pkg-1.0/pkg/alias.py": ("a.py", tarfile.SYMTYPE)},
    )
    root = safe_extract(archive, tmp_path / "pkg", "pkg==1.0")
    assert (root / "pkg" / "a.py").read_text() == CODE
    assert (root / "pkg" / "alias.py").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # the .partial folder is gone
    with pytest.raises(UnsafeArchive, match="one top folder"):
        safe_extract(make_tar({"a/x.py": CODE, "b/y.py": CODE}), tmp_path / "two", "two==1.0")
    with pytest.raises(UnsafeArchive, match="not a tar archive"):
        safe_extract(b"PK\x03\x04 not a tarball", tmp_path / "zip", "zip==1.0")


def _tree(tmp_path, files: dict[str, str]):
    root = tmp_path / "demo-1.0"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "meta",
    [
        {"License_Expression": "GPL-3.0-or-later"},
        {"License_Expression": "MPL-2.0"},
        {"License_Expression": "MIT AND LGPL-2.1-only"},
        {"Classifier": "License :: OSI Approved :: GNU General Public License v3 (GPLv3)"},
        {"Classifier": "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)"},
        {"License": "GPLv2"},
        {},  # no licence declared at all
    ],
)
def test_copyleft_or_missing_licence_in_pkg_info_is_refused(tmp_path, meta):
    root = _tree(tmp_path, {"PKG-INFO": pkg_info(**meta), "LICENSE": MIT_TEXT})
    with pytest.raises(LicenceRefused, match="not on the permissive list"):
        check_licence(root, "demo==1.0")


def test_licence_file_must_exist_and_not_be_copyleft(tmp_path):
    root = _tree(tmp_path, {"PKG-INFO": pkg_info(License_Expression="MIT"), "COPYING": GPL_TEXT})
    with pytest.raises(LicenceRefused, match="COPYING is a copyleft licence"):
        check_licence(root, "demo==1.0")
    (root / "COPYING").unlink()
    with pytest.raises(LicenceRefused, match="no LICENSE/COPYING file"):
        check_licence(root, "demo==1.0")


def test_licence_read_from_expression_classifiers_or_first_line(tmp_path):
    cases = [
        (pkg_info(License_Expression="BSD-3-Clause", License_File=["AUTHORS.rst", "LICENSE"]), "BSD-3-Clause"),
        (pkg_info(Classifier=["License :: OSI Approved :: MIT License", "Topic :: Utilities"]), "MIT License"),
        ("Metadata-Version: 2.1\nName: demo\nLicense: Apache 2.0\n        full text line two\n\n", "Apache 2.0"),
    ]
    for meta, expected in cases:
        root = _tree(tmp_path, {"PKG-INFO": meta, "AUTHORS.rst": "me\n", "LICENSE": MIT_TEXT})
        assert check_licence(root, "demo==1.0") == (expected, "LICENSE")  # never AUTHORS.rst


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class LocalIndex:
    """A PyPI-shaped JSON API and file host on 127.0.0.1 (a real socket, no outside network)."""

    def __init__(self, root):
        self.root = root
        handler = functools.partial(QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, name, version, archive: bytes | None, sha256=None, release_endpoint=True):
        files = []
        if archive is not None:
            (self.root / "packages").mkdir(parents=True, exist_ok=True)
            (self.root / "packages" / f"{name}-{version}.tar.gz").write_bytes(archive)
            files.append({"packagetype": "sdist", "digests": {"sha256": sha256 or hashlib.sha256(archive).hexdigest()}})
        files.append({"packagetype": "bdist_wheel", "url": "x.whl", "digests": {"sha256": "0" * 64}})
        if release_endpoint:  # like pypi.org: absolute URLs on /pypi/<name>/<version>/json
            for f in files[: archive is not None]:
                f["url"] = f"{self.base}/packages/{name}-{version}.tar.gz"
            path = self.root / "pypi" / name / version / "json"
            project = {"info": {}, "urls": files}
        else:  # like some mirrors: only the project endpoint, with URLs relative to it
            for f in files[: archive is not None]:
                f["url"] = f"../../packages/{name}-{version}.tar.gz"
            path = self.root / "pypi" / name / "json"
            project = {"info": {}, "releases": {version: files}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(project))


@pytest.fixture
def index(tmp_path, monkeypatch):
    idx = LocalIndex(tmp_path / "www")
    monkeypatch.setattr(sdists, "PYPI_JSON", idx.base + "/pypi/{name}/{version}/json")
    monkeypatch.setattr(sdists, "PYPI_PROJECT_JSON", idx.base + "/pypi/{name}/json")
    yield idx
    idx.server.shutdown()
    idx.server.server_close()


def test_fetch_verifies_extracts_records_and_then_uses_the_cache(tmp_path, index):
    archive = demo_sdist()  # built once: gzip stamps the time into its header
    index.publish("demo", "1.0", archive)
    lines: list[str] = []
    got = fetch_sdist("demo", "1.0", tmp_path / "cache" / "demo-1.0", lines.append)
    assert (got.root / "demo" / "__init__.py").read_text() == CODE
    assert (got.licence, got.licence_file) == ("MIT", "LICENSE")
    assert got.sha256 == hashlib.sha256(archive).hexdigest()
    assert json.loads((got.root / RECORD).read_text())["sha256"] == got.sha256
    assert any("sha256 ok" in line for line in lines)
    index.server.shutdown()  # the registry is gone: the second call must not need it
    again = fetch_sdist("demo", "1.0", tmp_path / "cache" / "demo-1.0", lines.append)
    assert again.sha256 == got.sha256 and "cached" in lines[-1]


def test_mirror_with_only_the_project_endpoint_and_relative_urls(tmp_path, index):
    index.publish("mirrored", "2.0", demo_sdist(), release_endpoint=False)
    got = fetch_sdist("mirrored", "2.0", tmp_path / "m", None)
    assert got.url == f"{index.base}/packages/mirrored-2.0.tar.gz"
    with pytest.raises(PackageNotFound, match="no version '9.9'"):
        fetch_sdist("mirrored", "9.9", tmp_path / "m9", None)


def test_fetch_errors_are_clear_and_leave_nothing_behind(tmp_path, index):
    with pytest.raises(PackageNotFound, match="no package 'ghost'"):
        fetch_sdist("ghost", "1.0", tmp_path / "ghost", None)
    index.publish("wheelonly", "1.0", None)
    with pytest.raises(NoSdist, match="no source distribution"):
        fetch_sdist("wheelonly", "1.0", tmp_path / "w", None)
    index.publish("tampered", "1.0", demo_sdist(), sha256="ab" * 32)
    with pytest.raises(ChecksumMismatch, match="does not match the registry's abab"):
        fetch_sdist("tampered", "1.0", tmp_path / "t", None)
    index.publish("gpl", "1.0", demo_sdist("GPL-3.0-only", GPL_TEXT))
    with pytest.raises(LicenceRefused, match="GPL-3.0-only"):
        fetch_sdist("gpl", "1.0", tmp_path / "g", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]  # no tree, no partial folder
    mine = tmp_path / "mine"
    (mine / "notes.txt").parent.mkdir()
    (mine / "notes.txt").write_text("keep me")
    index.publish("demo", "1.0", demo_sdist())
    with pytest.raises(sdists.SdistError, match="is not a fetched sdist"):
        fetch_sdist("demo", "1.0", mine, None)
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.skipif(os.environ.get("DEEPFIM_NETWORK_TESTS") != "1", reason="reaches PyPI; set DEEPFIM_NETWORK_TESTS=1")
def test_real_pypi_sdist(tmp_path):
    got = fetch_sdist("mccabe", "0.7.0", tmp_path / "mccabe", None)
    assert (got.root / "mccabe.py").is_file() and "MIT" in got.licence
