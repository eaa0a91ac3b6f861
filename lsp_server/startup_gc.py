"""The garbage collector while the language server starts.

A start imports torch and pygls and loads a model: millions of objects, none of them garbage,
and every full collection walks them all (one took 76 ms; a start ran several, all on the way
to the first suggestion: editor start -> first suggestion 2.24 -> 1.98 s without them). So
`deepfim lsp` pauses the collector from its start until the first engine load has finished,
then freezes what is alive at that point out of later collections (`gc.freeze`) and resumes it.

A workspace index built after that (hundreds of thousands of objects, alive for the session)
is frozen too once its scan is done (`settle`): else a full collection that happens to run in
a completion walks it (a new file's context: 155 -> 50 ms in such a case). Garbage is collected
first, so what the freeze keeps is what is alive.
"""

from __future__ import annotations

import gc

_paused = False
_managed = False  # `pause` ran: this process is `deepfim lsp`, whose collector this module tunes


def pause() -> None:
    global _paused, _managed
    _managed = True
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Freezes the objects alive now and turns the collector back on, if `pause` turned it off."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def settle() -> None:
    """After a workspace scan: collect, then freeze what is alive (the index) out of later
    collections. Nothing in a process whose collector `pause` did not manage."""
    if _managed and not _paused:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
