"""Which requests run in the next engine step: continuous batching with priorities, a prefill
budget per step and per-user fairness.

Every engine step runs one batch: a decode step of every running sequence (all of them together,
so a user's keystroke never waits for another user's generation to end), plus prefill chunks of
requests still reading their prompts, up to `prefill_budget` prompt tokens per step (a chunk is at
most 128 tokens; at least one chunk runs whenever a prompt waits). So a keystroke waits for at
most one chunk of anyone else's long prefill, never for the whole of it, and a long prefill slows
each decode step by at most one chunk. Background work (a workspace's repository part, prefilled
ahead of need) yields to everything else: while an instant or expert request is active it runs
in one step of every `BACKGROUND_EVERY`, so a keystroke's decode steps are not each slowed by a
chunk of it (a cold start's first suggestion decoded at 9 ms/token beside the warm-up, 1.3 alone),
and a server that is never idle still warms up. 64 steps: a whole instant request (its prefill
chunks and up to 48 tokens) meets at most one chunk of it (with 16 it met three, ~30 ms each at
16K tokens of context, on a cold start's first suggestion). Order of choice, for the prefill budget and for
the `max_sequences` cap on a step:
1. priority: instant < expert < background;
2. among equals, the user served least recently (round robin across users), so one user's
   burst cannot starve another;
3. within a user, the oldest request.
Finished and cancelled requests leave at once; the engine frees their state. A request whose
prompt extends a prefill in flight (the head of its own prompt, sent ahead) sits out the steps
until that prefill has cached what they share (`WAITS`, `ModelRunner._waits_for_another`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from deepfim.engine.api import Priority

PREFILL_BUDGET = 128  # prompt tokens per step: one full chunk, or several short pieces
MAX_SEQUENCES = 64  # requests per step (each may carry several candidates)
BACKGROUND_EVERY = 64  # while other work is active, background work joins one step in this many
WAITS = -1  # a prefill cost: the request waits for another's prefill of its own prefix (ModelRunner)


class Schedulable(Protocol):
    seq_no: int

    @property
    def priority(self) -> int: ...

    @property
    def user(self) -> str: ...

    @property
    def prefilling(self) -> bool: ...


class Scheduler:
    def __init__(self, prefill_budget: int = PREFILL_BUDGET, max_sequences: int = MAX_SEQUENCES) -> None:
        self.prefill_budget = prefill_budget
        self.max_sequences = max_sequences
        self._active: dict[int, Schedulable] = {}
        self._last_served: dict[str, int] = {}
        self._tick = 0
        self._steps = 0
        self._background_step = 0  # the last step background work joined

    def add(self, item: Schedulable) -> None:
        self._active[item.seq_no] = item

    def remove(self, item: Schedulable) -> None:
        self._active.pop(item.seq_no, None)

    def __len__(self) -> int:
        return len(self._active)

    def items(self) -> list[Schedulable]:
        return list(self._active.values())

    def order(self) -> list[Schedulable]:
        """Every active request, best first (priority, least recently served user, oldest)."""
        return sorted(
            self._active.values(), key=lambda it: (it.priority, self._last_served.get(it.user, -1), it.seq_no)
        )

    def next_batch(self, prefill_cost: Callable[[Schedulable], int]) -> list[Schedulable]:
        """The requests of the next step, best first. `prefill_cost(item)` is the number of prompt
        tokens the item's next chunk holds (0: its prompt is done, it decodes now; WAITS: not
        this step)."""
        batch: list[Schedulable] = []
        spent = 0
        ordered = self.order()
        self._steps += 1
        yielding = (
            any(it.priority < Priority.BACKGROUND for it in ordered)
            and self._steps - self._background_step < BACKGROUND_EVERY
        )
        for item in ordered:
            if len(batch) >= self.max_sequences:
                break
            if item.priority >= Priority.BACKGROUND and yielding:
                continue
            if item.prefilling:
                if spent >= self.prefill_budget:
                    continue
                cost = prefill_cost(item)
                if cost == WAITS:
                    continue
                if spent and spent + cost > self.prefill_budget:
                    continue  # a later, shorter piece may still fit
                spent += cost
            batch.append(item)
        for item in batch:
            self._tick += 1
            self._last_served[item.user] = self._tick
            if item.priority >= Priority.BACKGROUND:
                self._background_step = self._steps
        return batch
