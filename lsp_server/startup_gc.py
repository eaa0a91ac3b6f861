"""The garbage collector while the language server starts.

A start imports torch and pygls and loads a model: millions of objects, none of them garbage,
and every full collection walks them all (one took 76 ms; a start ran several, all on the way
to the first suggestion: editor start -> first suggestion 2.24 -> 1.98 s without them). So
`deepfim lsp` pauses the collector from its start until the first engine load has finished,
then freezes what is alive at that point out of later collections (`gc.freeze`) and resumes it.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    global _paused
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
