"""Fair admission of requests into the backend.

Each user has a queue; at most `capacity` requests are handed to the backend at once. When
a slot frees, the best priority waiting anywhere goes first (instant > expert > background),
and among users waiting at that priority the least recently served goes first (round-robin
that remembers a user even while their queue is empty), so one user's burst cannot
starve the others. The engine's scheduler still orders what it is given; this
layer only decides *who gets in*. Runs on the event loop thread (no locks).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from deepfim.engine.api import Priority


@dataclass(eq=False)
class Ticket:
    """One request waiting for (or holding) a backend slot."""

    user: str
    priority: Priority
    start: Callable[[], None]  # called once when admitted; must not raise
    state: str = field(default="queued")  # queued | running | done | withdrawn


class Admission:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"admission capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self.running = 0
        self._queues: dict[str, list[deque[Ticket]]] = {}  # only users with something queued
        self._last_served: dict[str, int] = {}  # user → admission stamp (bounded by the users file)
        self._stamp = 0

    @property
    def queued(self) -> int:
        return sum(len(q) for qs in self._queues.values() for q in qs)

    def enqueue(self, user: str, priority: Priority, start: Callable[[], None]) -> Ticket:
        ticket = Ticket(user, priority, start)
        if user not in self._queues:
            self._queues[user] = [deque() for _ in Priority]
        self._queues[user][priority].append(ticket)
        self._admit()
        return ticket

    def withdraw(self, ticket: Ticket) -> bool:
        """Removes a still-queued ticket; False if it already started or finished."""
        if ticket.state != "queued":
            return False
        self._queues[ticket.user][ticket.priority].remove(ticket)
        ticket.state = "withdrawn"
        self._forget_if_empty(ticket.user)
        return True

    def finished(self, ticket: Ticket) -> None:
        """Frees the slot of a running ticket (idempotent) and admits the next one."""
        if ticket.state != "running":
            return
        ticket.state = "done"
        self.running -= 1
        self._admit()

    def _forget_if_empty(self, user: str) -> None:
        if not any(self._queues[user]):
            del self._queues[user]

    def _admit(self) -> None:
        while self.running < self.capacity and self._queues:
            best = min(p for queues in self._queues.values() for p in Priority if queues[p])
            waiting = [u for u, queues in self._queues.items() if queues[best]]
            user = min(waiting, key=lambda u: self._last_served.get(u, -1))  # ties: first to arrive
            ticket = self._queues[user][best].popleft()
            self._stamp += 1
            self._last_served[user] = self._stamp
            self._forget_if_empty(user)
            ticket.state = "running"
            self.running += 1
            ticket.start()
