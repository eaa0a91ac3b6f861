"""Runs `watchfiles.watch` on a daemon thread and hands each batch of changes to a callback.

watchfiles' `DefaultFilter` drops the churn of ``.git``, ``node_modules``, caches and editor
swap files; the workspace's own rules (ignore files, secrets, languages) decide the rest.
A failing callback is logged and the watch goes on; a failing watcher (the directory
vanished, inotify limits) is logged and the thread ends; the index then stays as it was
until the next `scan`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Changes = set[tuple[str, Path]]  # ("added" | "modified" | "deleted", absolute path)


class Watcher:
    """Watches `root` until `stop` is called."""

    def __init__(self, root: Path, on_changes: Callable[[Changes], None], debounce_ms: int) -> None:
        self.root = root
        self._on_changes = on_changes
        self._debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"deepfim-watch:{self.root.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        from watchfiles import DefaultFilter, watch

        try:
            changes_iter = watch(
                self.root,
                watch_filter=DefaultFilter(),
                debounce=self._debounce_ms,
                step=50,
                stop_event=self._stop,
                rust_timeout=500,
                yield_on_timeout=True,
                raise_interrupt=False,
                ignore_permission_denied=True,
            )
            for changes in changes_iter:
                self.started.set()
                if self._stop.is_set():
                    break
                if not changes:
                    continue
                batch = {(change.name, Path(path)) for change, path in changes}
                try:
                    self._on_changes(batch)
                except Exception:  # one bad batch must not end the watch
                    log.exception("applying file changes under %s failed", self.root)
        except Exception:
            log.exception("watching %s stopped", self.root)
        finally:
            self.started.set()
