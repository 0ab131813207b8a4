"""A virtual clock and an event heap: callbacks run in deadline order, time jumps between them."""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush


class Scheduler:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.executed = 0

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heappush(self._heap, (max(when, self.now), self._seq, fn))

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.call_at(self.now + delay, fn)

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def step(self) -> bool:
        if not self._heap:
            return False
        when, _, fn = heappop(self._heap)
        self.now = when
        self.executed += 1
        fn()
        return True

    def run_until(self, when: float) -> None:
        while self._heap and self._heap[0][0] <= when:
            self.step()
        self.now = max(self.now, when)

    def run_while(self, cond: Callable[[], bool], limit: float) -> bool:
        """Run while ``cond()`` holds, up to virtual time ``limit``; True if ``cond`` went false."""
        while cond():
            if not self._heap or self._heap[0][0] > limit:
                self.now = max(self.now, limit)
                return False
            self.step()
        return True
