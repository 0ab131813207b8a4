"""Outstanding requests: request ids, the pending table, response correlation and deadlines.

Sans-IO like the rest of the core: every input carries ``now``, ids come from the injected
``random.Random``, and nothing here sends anything (the caller does).

Rules:
- A request id is a random 64-bit number that is not pending at the time it is drawn.
- A response matches a pending request only when it comes from the peer the request went to,
  with one of the types that request expects (``messages.RESPONSE_TYPES``), while the request is
  pending. A match removes the entry, so a duplicate answer never matches twice.
- Request timeouts and operation deadlines share one heap, fired in deadline order. Entries are
  deleted lazily: one whose request or operation is gone is skipped, never fired.
- A matched response updates the peer's smoothed round-trip time (EWMA).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from heapq import heappop, heappush

from node.ids import NodeId
from node.messages import RESPONSE_TYPES, MsgType, Request, Response

RTT_EWMA_WEIGHT = 0.25


class TimerKind(enum.IntEnum):
    """What a deadline in ``Timers`` refers to."""

    REQUEST = 0  # ref is a request id: the request timed out
    OPERATION = 1  # ref is an operation id: its deadline (or grace period) passed


class Timers:
    """One heap of ``(deadline, kind, ref)``; dead entries are skipped, not removed eagerly."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, TimerKind, int]] = []

    def arm(self, deadline: float, kind: TimerKind, ref: int) -> None:
        heappush(self._heap, (deadline, kind, ref))

    def next_deadline(self, alive: Callable[[TimerKind, int], bool]) -> float | None:
        """The earliest deadline whose reference is still ``alive`` (dead ones are dropped)."""
        while self._heap:
            _, kind, ref = self._heap[0]
            if alive(kind, ref):
                return self._heap[0][0]
            heappop(self._heap)
        return None

    def due(self, now: float) -> Iterator[tuple[TimerKind, int]]:
        """Pop every entry due at ``now``, in order; entries armed meanwhile are seen too."""
        while self._heap and self._heap[0][0] <= now:
            _, kind, ref = heappop(self._heap)
            yield kind, ref


@dataclass(slots=True)
class Pending:
    """A request in flight. ``op_id`` is the operation it serves (None: a maintenance send)."""

    peer: NodeId
    request: Request
    op_id: int | None
    sent_at: float

    @property
    def expects(self) -> tuple[MsgType, ...]:
        return RESPONSE_TYPES[self.request.type]


class RequestTable:
    def __init__(self, rng: random.Random, timers: Timers) -> None:
        self._rng = rng
        self._timers = timers
        self._pending: dict[int, Pending] = {}
        self.rtt: dict[NodeId, float] = {}  # smoothed request → response time, seconds

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, rid: int) -> bool:
        return rid in self._pending

    def new_rid(self) -> int:
        while True:
            rid = self._rng.getrandbits(64)
            if rid not in self._pending:
                return rid

    def add(
        self, peer: NodeId, request: Request, op_id: int | None, now: float, timeout_s: float
    ) -> None:
        """Track ``request`` (its ``rid`` from ``new_rid``) and arm its timeout."""
        self._pending[request.rid] = Pending(peer, request, op_id, now)
        self._timers.arm(now + timeout_s, TimerKind.REQUEST, request.rid)

    def match(self, peer: NodeId, response: Response, now: float) -> Pending | None:
        """The pending request ``response`` answers, now removed; None when it answers none."""
        p = self._pending.get(response.rid)
        if p is None or p.peer != peer or response.type not in p.expects:
            return None
        del self._pending[response.rid]
        sample = now - p.sent_at
        prev = self.rtt.get(peer)
        self.rtt[peer] = sample if prev is None else prev + RTT_EWMA_WEIGHT * (sample - prev)
        return p

    def pop(self, rid: int) -> Pending:
        return self._pending.pop(rid)

    def to_peer(self, peer: NodeId) -> list[int]:
        """Request ids pending at ``peer``, oldest first."""
        return [rid for rid, p in self._pending.items() if p.peer == peer]
