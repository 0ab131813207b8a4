"""Kademlia routing table: 256 k-buckets of verified contacts.

Invariants:
- A contact lives in the bucket of its first differing bit with the own ID (``ids.bucket_index``);
  the own ID is never stored. A bucket holds at most ``k`` contacts, least-recently-seen first.
- A full bucket keeps newcomers in a replacement cache (newest first, at most ``k``) and asks its
  owner to ping the oldest contact (``update`` returns it). The table itself never does I/O and
  never reads a clock: ``now`` comes in with every call. When the owner reports the oldest contact
  dead (``remove``), the newest replacement is promoted.
- ``closest(target, n)`` is exact: it walks buckets in XOR-distance order. Relative to the own ID,
  contacts of bucket ``b = bucket_index(own, target)`` are closest to the target; the contacts of
  every deeper bucket (``j > b``) come next, all in one distance class; then buckets ``b-1 .. 0``,
  each a class of its own. Only the classes it needs are sorted. (The JS implementation this
  replaces skipped the deeper buckets.)
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

from node.ids import ID_BITS, NodeId, as_int, bucket_index


class RemovalReason(enum.StrEnum):
    """Why a contact left the routing table (``events.ContactRemoved.reason``)."""

    UNRESPONSIVE = "unresponsive"  # too many requests failed in a row
    PING_TIMEOUT = "ping timeout"  # a liveness or full-bucket ping went unanswered
    LIVENESS_LOST = "liveness lost"  # the transport heard nothing from the peer for too long
    LEFT = "left"  # the contact said BYE: it left the network on purpose


@dataclass(slots=True, eq=False)  # identity equality: contacts are unique per table
class Contact:
    id: NodeId
    last_seen: float
    failures: int = 0
    n: int = field(init=False)  # the id as an integer, for distance arithmetic

    def __post_init__(self) -> None:
        self.n = int.from_bytes(self.id, "big")


@dataclass(slots=True)
class Bucket:
    contacts: list[Contact]  # least recently seen first
    replacements: list[NodeId]  # newest first
    last_touched: float

    def find(self, node_id: NodeId) -> int:
        for i, c in enumerate(self.contacts):
            if c.id == node_id:
                return i
        return -1


class RoutingTable:
    def __init__(self, own_id: NodeId, k: int = 20, now: float = 0.0) -> None:
        self.own_id = own_id
        self.k = k
        self._own_int = as_int(own_id)
        self._buckets: dict[int, Bucket] = {}
        self._index: dict[NodeId, Contact] = {}  # every contact of every bucket, for O(1) lookups
        self._created = now
        self._size = 0

    # -- queries ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and node_id in self._index

    def contact(self, node_id: NodeId) -> Contact | None:
        return self._index.get(node_id)

    def contacts(self) -> Iterator[Contact]:
        for index in sorted(self._buckets):
            yield from self._buckets[index].contacts

    def buckets(self) -> list[tuple[int, Bucket]]:
        return sorted((i, b) for i, b in self._buckets.items() if b.contacts or b.replacements)

    def bucket_last_touched(self, index: int) -> float:
        b = self._buckets.get(index)
        return b.last_touched if b is not None else self._created

    def bucket_count(self, index: int) -> int:
        b = self._buckets.get(index)
        return len(b.contacts) if b is not None else 0

    def bucket_full(self, index: int) -> bool:
        b = self._buckets.get(index)
        return b is not None and len(b.contacts) >= self.k

    def deepest_bucket(self) -> int:
        """Index of the deepest non-empty bucket, or -1 for an empty table."""
        return max((i for i, b in self._buckets.items() if b.contacts), default=-1)

    def closest(self, target: bytes, n: int, exclude: NodeId | None = None) -> list[NodeId]:
        """The ``n`` contacts closest to ``target`` by XOR distance, closest first (exact)."""
        if n <= 0 or not self._buckets:
            return []
        t = as_int(target)
        own_dist = self._own_int ^ t
        b = ID_BITS - own_dist.bit_length() if own_dist else ID_BITS
        out: list[NodeId] = []

        def take(contacts: list[Contact]) -> bool:
            # (distance, id) pairs sort in C without a key function; distances are unique.
            pairs = [(c.n ^ t, c.id) for c in contacts]
            want = n - len(out) + 1  # one spare in case ``exclude`` is among them
            ordered = heapq.nsmallest(want, pairs) if len(pairs) > 4 * want else sorted(pairs)
            for _, x in ordered:
                if x != exclude:
                    out.append(x)
                    if len(out) >= n:
                        return True
            return False

        if b < ID_BITS:
            first = self._buckets.get(b)
            if first is not None and first.contacts and take(first.contacts):
                return out
        deeper = [c for j, bk in self._buckets.items() if j > b for c in bk.contacts]
        if deeper and take(deeper):
            return out
        for j in range(min(b, ID_BITS) - 1, -1, -1):
            bk = self._buckets.get(j)
            if bk is not None and bk.contacts and take(bk.contacts):
                return out
        return out

    # -- updates ---------------------------------------------------------------------------------

    def update(self, node_id: NodeId, now: float) -> NodeId | None:
        """Record that ``node_id`` was seen (it answered or sent a valid message).

        Returns the oldest contact of a full bucket that the owner should ping before it can be
        replaced by ``node_id`` (which waits in the replacement cache), else ``None``.
        """
        if node_id == self.own_id:
            return None
        index = bucket_index(self.own_id, node_id)
        b = self._buckets.get(index)
        if b is None:
            b = self._buckets[index] = Bucket([], [], now)
        c = self._index.get(node_id)
        if c is not None:
            b.contacts.remove(c)
            c.last_seen = now
            c.failures = 0
            b.contacts.append(c)
            return None
        if len(b.contacts) < self.k:
            b.contacts.append(c := Contact(node_id, now))
            self._index[node_id] = c
            self._size += 1
            if node_id in b.replacements:
                b.replacements.remove(node_id)
            return None
        if node_id in b.replacements:
            b.replacements.remove(node_id)
        b.replacements.insert(0, node_id)
        del b.replacements[self.k :]
        return b.contacts[0].id

    def touch_bucket(self, target: bytes, now: float) -> None:
        """A lookup for ``target`` ran: its bucket counts as refreshed."""
        if target == self.own_id:
            return
        b = self._buckets.get(bucket_index(self.own_id, target))
        if b is not None:
            b.last_touched = now

    def record_failure(self, node_id: NodeId, max_failures: int) -> bool:
        """Count a failed request; remove the contact (promoting a replacement) once it reaches
        ``max_failures``, or at once when a replacement is waiting. True when it was removed."""
        c = self.contact(node_id)
        if c is None:
            return False
        c.failures += 1
        b = self._buckets[bucket_index(self.own_id, node_id)]
        if c.failures >= max_failures or b.replacements:
            return self.remove(node_id)
        return False

    def remove(self, node_id: NodeId) -> bool:
        """Evict a contact; the newest replacement, if any, takes its place."""
        if node_id == self.own_id:
            return False
        index = bucket_index(self.own_id, node_id)
        b = self._buckets.get(index)
        if b is None:
            return False
        if node_id in b.replacements:
            b.replacements.remove(node_id)
        i = b.find(node_id)
        if i < 0:
            return False
        del b.contacts[i]
        del self._index[node_id]
        self._size -= 1
        if b.replacements:
            promoted = b.replacements.pop(0)
            b.contacts.append(c := Contact(promoted, b.last_touched))
            self._index[promoted] = c
            self._size += 1
        return True
