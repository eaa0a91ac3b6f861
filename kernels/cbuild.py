"""Builds a kernel's small C source into a shared library on first use, cached by content hash.

Used for CPU kernels whose torch form is dominated by per-op dispatch cost (dozens of tiny ops
per token). Needs a C compiler (`cc`); without one, or if the build fails, `load` returns None
and callers fall back to the torch reference, so nothing depends on it. The cache directory
is 0700 and each library 0600 (`deepfim.private_files`): the process loads and runs these
files, so no other user may replace one.

Each library's size and sha256 are recorded beside it at build (`<name>.so.check`) and
verified before every `dlopen`: a truncated library would be mapped and crash the process
with SIGBUS on first use, so a library that does not match its record is rebuilt instead.

A first build takes seconds (step.c: 1.3 s at -O3), which a cold start would otherwise spend
waiting: `prebuild` starts the compiler at process start, beside the imports, and the `load`
that needs the library waits only for what is left of it. A library the first requests can do
without is built `later`: only once `release_later` says the first request is served (or a
`load` needs it, or the process exits, or `LATER_AFTER_S` passed), since on two cores a
compiler beside the first prefill slows it by a third whatever its priority.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from deepfim import env
from deepfim.private_files import narrow_file, private_dir, private_temp, write_private

log = logging.getLogger(__name__)

FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC")
# nice levels of the compilers: below the process's own start (imports, model load); a `later`
# build below everything
NICE, NICE_LATER = 10, 19
LATER_AFTER_S = 10.0  # a `later` build starts by itself after this long
_loaded: dict[Path, ctypes.CDLL | None] = {}


@dataclass(frozen=True)
class _Prebuild:
    thread: threading.Thread
    linked: tuple[Path, ...]
    openmp: bool
    released: threading.Event  # set: it may compile (at once unless `later`)


_prebuilds: dict[Path, _Prebuild] = {}  # every prebuild of the process, for `load` and the wait at exit


def _flag_sets(openmp: bool) -> tuple[tuple[str, ...], ...]:
    return ((*FLAGS, "-fopenmp"), FLAGS) if openmp else (FLAGS,)


def prebuild(source: Path, *linked: Path, openmp: bool = False, later: bool = False) -> None:
    """Starts building what `load(source, *linked, openmp=openmp)` will load, on a thread (the
    compiler is a process of its own, so it runs beside the caller's imports on another core).
    Returns at once; does nothing if the library is loaded or being built. A failure is left
    for `load` to meet and report. `later`: for a library the first requests can do without;
    it is compiled once released (`release_later`) and at the lowest priority."""
    if source in _loaded or source in _prebuilds:
        return
    released = threading.Event()
    if not later:
        released.set()

    def build() -> None:
        released.wait(LATER_AFTER_S)
        for flags in _flag_sets(openmp):
            try:
                _build(source, linked, flags, nice=NICE_LATER if later else NICE)
                return
            except (OSError, subprocess.SubprocessError, RuntimeError):
                continue

    thread = threading.Thread(target=build, name=f"deepfim-cbuild-{source.stem}", daemon=True)
    if not _prebuilds:
        atexit.register(_finish_prebuilds)
    _prebuilds[source] = _Prebuild(thread, linked, openmp, released)
    thread.start()


def release_later() -> None:
    """The first request is served: `later` prebuilds may compile now."""
    for build in _prebuilds.values():
        build.released.set()


def wait_prebuilt(source: Path) -> None:
    """Waits, without releasing it, until the prebuild of `source` (if any) is over."""
    build = _prebuilds.get(source)
    if build is not None:
        build.thread.join()


def _finish_prebuilds() -> None:
    """At exit, lets prebuilds finish, `later` ones included (a process that did not need a
    library, e.g. a `deepfim complete` served before the C step was built, still leaves it
    compiled in the cache for the next start, instead of killing its compiler's thread)."""
    release_later()
    for build in _prebuilds.values():
        build.thread.join(timeout=150)


def prebuilding(source: Path) -> bool:
    """Whether a prebuild of `source` is still running (no file is hashed: cheap per call)."""
    build = _prebuilds.get(source)
    return build is not None and build.thread.is_alive()


def pending(source: Path) -> bool:
    """Whether `load(source)` would wait for a compiler: a prebuild is running and its library
    is not in the cache yet (a cached one is only checked and loaded: no wait worth avoiding)."""
    build = _prebuilds.get(source)
    if source in _loaded or build is None or not build.thread.is_alive():
        return False
    try:
        return not _target(source, build.linked, _flag_sets(build.openmp)[0]).exists()
    except (OSError, RuntimeError):
        return True


def load(source: Path, *linked: Path, openmp: bool = False) -> ctypes.CDLL | None:
    """The compiled library of `source` (plus the `linked` sources whose functions it calls),
    or None when it cannot be built here. `openmp`: build with OpenMP where the compiler has it
    (the pragmas are ignored otherwise); the runtime is the libgomp torch has already loaded."""
    if source in _loaded:
        return _loaded[source]
    build = _prebuilds.get(source)
    if build is not None and build.thread.is_alive():
        build.released.set()  # needed now
        waited = time.perf_counter()
        build.thread.join()  # its library is in the cache now (or its failure is met again below)
        log.debug("waited %.0f ms for the build of %s", (time.perf_counter() - waited) * 1000, source.name)
    lib = None
    errors = []
    for flags in _flag_sets(openmp):
        try:
            lib = ctypes.CDLL(str(_build(source, linked, flags)))
            break
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            errors.append(str(exc))
    if lib is None:
        log.warning("C kernel %s unavailable (%s); using the torch reference", source.name, "; ".join(errors))
    _loaded[source] = lib
    return lib


def _compiler() -> str:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found")
    return compiler


def _target(source: Path, linked: tuple[Path, ...], flags: tuple[str, ...]) -> Path:
    """The cached library of these sources (headers included) and flags."""
    hashed = b"".join(f.read_bytes() for f in _with_headers((source, *linked))) + " ".join(flags).encode()
    digest = hashlib.sha256(hashed).hexdigest()[:16]
    return private_dir(env.cache_dir() / "kernels") / f"{source.stem}-{digest}.so"


def _build(source: Path, linked: tuple[Path, ...], flags: tuple[str, ...], nice: int = 0) -> Path:
    compiler = _compiler()
    sources = (source, *linked)
    target = _target(source, linked, flags)
    if target.exists():
        narrow_file(target)  # built by an older version, before the cache was private
        problem = integrity_problem(target)
        if problem is None:
            return target
        log.warning("compiled kernel %s is damaged (%s); rebuilding it", target, problem)
    started = time.perf_counter()
    with private_temp(target) as tmp_lib:  # atomic: concurrent builders race harmlessly
        command = [compiler, *flags, "-o", str(tmp_lib), *map(str, sources), "-lm"]
        if nice and shutil.which("nice"):
            command = ["nice", "-n", str(nice), *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        data = tmp_lib.read_bytes()
        write_private(_check_path(target), json.dumps({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    log.debug("built %s in %.0f ms", target.name, (time.perf_counter() - started) * 1000)
    return target


def _check_path(library: Path) -> Path:
    return library.with_name(library.name + ".check")


def integrity_problem(library: Path) -> str | None:
    """Why `library` does not match the size and sha256 recorded when it was built, or None."""
    try:
        record = json.loads(_check_path(library).read_text(encoding="utf-8"))
        size, sha256 = int(record["size"]), str(record["sha256"])
    except FileNotFoundError:
        return "no integrity record"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable integrity record ({exc})"
    data = library.read_bytes()
    if len(data) != size:
        return f"{len(data)} bytes, {size} recorded at build (truncated?)"
    if hashlib.sha256(data).hexdigest() != sha256:
        return "sha256 differs from the one recorded at build"
    return None


def _with_headers(sources: tuple[Path, ...]) -> list[Path]:
    """The sources and the local headers they `#include "..."` (a header edit must rebuild)."""
    seen: list[Path] = []
    todo = list(sources)
    while todo:
        path = todo.pop(0).resolve()
        if path in seen:
            continue
        seen.append(path)
        todo += [path.parent / name for name in re.findall(r'^#include "([^"]+)"', path.read_text(), re.M)]
    return seen
