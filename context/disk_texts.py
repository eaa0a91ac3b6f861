"""The redacted texts of indexed files on disk, kept while the files are unchanged.

Every prompt reads the files its evidence and repository part come from (`Indexer.text_of`),
and each read decoded the file, redacted its secrets (`secrets.redact`: every secret pattern
over the whole text) and hashed it to check it is still the text that was indexed. For a new
file's first prompt that was 5-10 ms of a 30 ms context stage on a 2-core machine
(`deepfim bench latency`: context ms). A file whose stat is what it was when its text was read
is taken from here: the redacted text only, never the raw bytes, so no secret is held here.

A stat that matches (mtime, ctime, size, inode) is the test git's index relies on: any write
through the file system changes ctime, which no tool can set back. As in git, a file written
within the last `RACY_S` is not kept: the file system's clock is coarse (a few ms), so a second
write in the same tick would leave the stat unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

BUDGET_CHARS = 32 << 20  # characters held, least recently used dropped first
RACY_S = 2.0


def signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class DiskTexts:
    def __init__(self, budget_chars: int = BUDGET_CHARS, racy_s: float = RACY_S) -> None:
        self.budget_chars = budget_chars
        self.racy_ns = int(racy_s * 1e9)
        self._lock = threading.Lock()
        self._texts: OrderedDict[str, tuple[tuple, str, str]] = OrderedDict()  # rel -> (stat, digest, text)
        self._chars = 0

    def get(self, rel: str, stat: tuple | None, digest: str) -> str | None:
        """The text of `rel` read when its stat was `stat`, if it had `digest`."""
        if stat is None:
            return None
        with self._lock:
            known = self._texts.get(rel)
            if known is None or known[0] != stat or known[1] != digest:
                return None
            self._texts.move_to_end(rel)
            return known[2]

    def put(self, rel: str, stat: tuple | None, digest: str, text: str) -> None:
        """Keeps `text`, read from `rel` when its stat was `stat` (taken before the read)."""
        if stat is None or len(text) > self.budget_chars or time.time_ns() - max(stat[0], stat[1]) < self.racy_ns:
            return
        with self._lock:
            self._drop(rel)
            self._texts[rel] = (stat, digest, text)
            self._chars += len(text)
            while self._chars > self.budget_chars:
                self._drop(next(iter(self._texts)))

    def _drop(self, rel: str) -> None:
        old = self._texts.pop(rel, None)
        if old is not None:
            self._chars -= len(old[2])
