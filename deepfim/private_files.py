"""Private cache files: directories 0700, files 0600, every file replaced atomically.

The caches hold the user's code and what is derived from it (the workspace index, token ids,
prefix-cache snapshots of prompts) and compiled kernels that the process loads and runs; on a
shared machine no other user may read or swap them. Modes are set explicitly, never left to
the umask, and a file only appears under its name once it is complete (write to a temporary
file in the same directory, then `os.replace`), so a crash never leaves a torn cache file.

Used by the index and token caches (`context/cache.py`, `context/tokens.py`), the compiled
kernel cache (`kernels/cbuild.py`) and prefix-cache persistence (`engine/serving/prefix_cache.py`).
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path | str) -> Path:
    """Creates `path` and any missing parents with mode 0700, and narrows `path` itself to 0700.

    Directories that already existed above `path` are left as they are (``~/.cache`` is not
    ours to change); `path` is, so a cache directory made by an older version is tightened.

    Raises:
        OSError: the directory cannot be created, or is not ours and is open to others.
    """
    path = Path(path)
    missing = []
    parent = path
    while not parent.is_dir():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            # another process made it first: it is narrowed below like any other
        os.chmod(directory, DIR_MODE)  # mkdir's mode passes through the umask
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


@contextmanager
def private_temp(target: Path | str) -> Iterator[Path]:
    """A temporary file next to `target` for a writer that wants a file name (safetensors, a
    compiler); when the block succeeds it becomes `target`, mode 0600, atomically; when it
    fails it is removed and `target` is untouched."""
    target = Path(target)
    private_dir(target.parent)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")  # made 0600
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)  # the writer may have replaced the file (a linker does)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_private(path: Path | str, data: bytes | str) -> None:
    """Writes `data` (str as UTF-8) to `path` atomically, mode 0600, in a 0700 directory."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with private_temp(path) as tmp:
        tmp.write_bytes(payload)


def narrow_file(path: Path | str) -> None:
    """Sets an existing cache file to 0600 (one written by an older version may be 0644)."""
    if stat.S_IMODE(os.stat(path).st_mode) != FILE_MODE:
        os.chmod(path, FILE_MODE)
