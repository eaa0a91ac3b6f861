"""Keep glibc from handing large freed blocks back to the OS between forward calls.

A prefill chunk allocates and frees score tensors of tens to hundreds of MB. glibc serves
such sizes with mmap and unmaps them on free, so every chunk page-faults them in again:
measured here, a 30K-token prefill spent 10 s of 19 s in the kernel. Raising the mmap and
trim thresholds keeps those pages in the heap for reuse (1.5x faster prefill). The cost is
that the process keeps its peak heap; fine for the engine, which is long-lived anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory() -> bool:
    """Applies the setting once per process; False where the C library is not glibc."""
    global _done
    if _done:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1 and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
    if not ok:
        log.info("mallopt refused the allocator settings; prefill may page-fault more")
    _done = True
    return ok
