"""Listen: push every new version of a key to the nodes that asked (sans-IO, ``now`` passed in).

Two sides, both driven by ``DhtProtocol`` (wire messages 30–32, docs/protocol.md §6.4):

- **Holder** (``ListenTable``): a LISTEN(key, ttl) from a peer registers it as a listener of
  ``key`` until ``now + min(ttl, max_ttl)`` (``ttl`` 0 removes it). Whenever a record of ``key``
  is stored here (a STORE, a cached copy, our own write), every live listener gets a NOTIFY with
  that record. A registration that is not refreshed expires: a dead listener stops costing
  pushes after at most its ttl. Capped per key and in total (refused with ``ok`` false).
- **Listener** (``Subscriptions``): ``listen(key)`` looks up the k closest nodes and sends each
  a LISTEN; the lookup and the LISTENs are repeated every ``ttl / 2`` (the closest set follows
  churn). A NOTIFY is accepted only for a key we listen to, with a valid record (checked by the
  caller), and only when it is better (``records.better``) than the last version seen — the same
  version pushed by k holders is reported once, and versions are reported in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from node.ids import NodeId
from node.records import Record, better

MAX_LISTENERS_PER_KEY = 64
MAX_LISTENERS_TOTAL = 10_000


class ListenTable:
    """Holder side: key → listener → expiry."""

    def __init__(self, max_ttl_s: float) -> None:
        self.max_ttl_s = max_ttl_s
        self._by_key: dict[bytes, dict[NodeId, float]] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def register(self, peer: NodeId, key: bytes, ttl_s: int, now: float) -> int:
        """Register (``ttl_s`` > 0) or remove (0) ``peer``; the seconds granted (0: none)."""
        listeners = self._by_key.get(key, {})
        if ttl_s <= 0:
            if listeners.pop(peer, None) is not None:
                self._total -= 1
            return 0
        self._prune(key, now)
        listeners = self._by_key.setdefault(key, {})
        if peer not in listeners and (
            len(listeners) >= MAX_LISTENERS_PER_KEY or self._total >= MAX_LISTENERS_TOTAL
        ):
            return 0
        granted = int(min(ttl_s, self.max_ttl_s))
        if peer not in listeners:
            self._total += 1
        listeners[peer] = now + granted
        return granted

    def listeners(self, key: bytes, now: float) -> list[NodeId]:
        self._prune(key, now)
        return list(self._by_key.get(key, ()))

    def _prune(self, key: bytes, now: float) -> None:
        listeners = self._by_key.get(key)
        if listeners is None:
            return
        for peer in [p for p, at in listeners.items() if at <= now]:
            del listeners[peer]
            self._total -= 1
        if not listeners:
            del self._by_key[key]

    def expire(self, now: float) -> None:
        for key in list(self._by_key):
            self._prune(key, now)


@dataclass(slots=True)
class Subscription:
    key: bytes
    next_refresh: float
    last: Record | None = None
    holders: tuple[NodeId, ...] = ()
    updates: int = 0


@dataclass(slots=True)
class Subscriptions:
    """Listener side: the keys this node listens to."""

    ttl_s: float
    subs: dict[bytes, Subscription] = field(default_factory=dict)

    def add(self, key: bytes, now: float, last: Record | None) -> bool:
        """Listen to ``key``; False when already listening."""
        if key in self.subs:
            return False
        self.subs[key] = Subscription(key, now, last)
        return True

    def remove(self, key: bytes) -> Subscription | None:
        return self.subs.pop(key, None)

    def due(self, now: float) -> list[bytes]:
        """Keys whose registrations need a refresh now (their next refresh is pushed back)."""
        out = [s.key for s in self.subs.values() if s.next_refresh <= now]
        for key in out:
            self.subs[key].next_refresh = now + self.ttl_s / 2
        return out

    def next_deadline(self) -> float:
        if not self.subs:
            return math.inf  # asked after every message: the common case costs no generator
        return min(s.next_refresh for s in self.subs.values())

    def offer(self, record: Record) -> bool:
        """A pushed or locally stored version: True when it is news (newer than the last)."""
        sub = self.subs.get(record.key)
        if sub is None:
            return False
        if sub.last is not None and (record == sub.last or not better(record, sub.last)):
            return False
        sub.last = record
        sub.updates += 1
        return True
