"""Which request runs next: iteration-level scheduling with priorities and per-user fairness.

Every engine step runs one unit of one request (a prefill chunk of at most 128 tokens, or one
decode step), then asks again. So a keystroke request waits for at most one chunk of anyone
else's long prefill, never for the whole of it. Order of choice:
1. priority: instant < expert < background;
2. among equals, the user served least recently (round robin across users), so one user's
   burst cannot starve another;
3. within a user, the oldest request.
Finished and cancelled requests leave at once; the engine frees their state.
"""

from __future__ import annotations

from typing import Protocol


class Schedulable(Protocol):
    seq_no: int

    @property
    def priority(self) -> int: ...

    @property
    def user(self) -> str: ...


class Scheduler:
    def __init__(self) -> None:
        self._active: dict[int, Schedulable] = {}
        self._last_served: dict[str, int] = {}
        self._tick = 0

    def add(self, item: Schedulable) -> None:
        self._active[item.seq_no] = item

    def remove(self, item: Schedulable) -> None:
        self._active.pop(item.seq_no, None)

    def __len__(self) -> int:
        return len(self._active)

    def items(self) -> list[Schedulable]:
        return list(self._active.values())

    def next(self) -> Schedulable | None:
        if not self._active:
            return None
        best = min(
            self._active.values(),
            key=lambda it: (it.priority, self._last_served.get(it.user, -1), it.seq_no),
        )
        self._tick += 1
        self._last_served[best.user] = self._tick
        return best
