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
from bisect import bisect_left, insort
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

from node.ids import ID_BITS, ID_BYTES, NodeId, as_int, bucket_index

_SORT_BELOW = 48  # slices this small are sorted outright by ``RoutingTable._nearest``


class RemovalReason(enum.StrEnum):
    """Why a contact left the routing table (``events.ContactRemoved.reason``)."""

    UNRESPONSIVE = "unresponsive"  # too many requests failed in a row
    PING_TIMEOUT = "ping timeout"  # a liveness or full-bucket ping went unanswered
    LIVENESS_LOST = "liveness lost"  # the transport heard nothing from the peer for too long
    LEFT = "left"  # the contact said BYE: it left the network on purpose
    BANNED = "banned"  # the contact flooded us with requests (``events.PeerBanned``)


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
        self._sorted: list[int] = []  # every contact's integer, ascending (for ``closest``)
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

    def covers(self, node_id: NodeId) -> bool:
        """The node is a contact, or its bucket is full (the table has no room it could take)."""
        return node_id in self._index or self.bucket_full(bucket_index(self.own_id, node_id))

    def deepest_bucket(self) -> int:
        """Index of the deepest non-empty bucket, or -1 for an empty table."""
        return max((i for i, b in self._buckets.items() if b.contacts), default=-1)

    def closest(self, target: bytes, n: int, exclude: NodeId | None = None) -> list[NodeId]:
        """The ``n`` contacts closest to ``target`` by XOR distance, closest first (exact)."""
        if n <= 0 or not self._sorted:
            return []
        t = as_int(target)
        ex = self._index.get(exclude) if exclude is not None else None
        want = n + 1 if ex is not None else n
        # ``NodeId(...)`` is a call at run time (NewType): cast the list once instead.
        out = cast(
            list[NodeId], [(d ^ t).to_bytes(ID_BYTES, "big") for d in self._nearest(t, want)]
        )
        if ex is not None:
            out = [x for x in out if x != exclude]
        return out[:n]

    def _nearest(self, t: int, want: int) -> list[int]:
        """XOR distances to ``t`` of the ``want`` nearest contacts, ascending.

        ``_sorted`` holds the contacts' integers in order, so the contacts sharing any prefix
        form one slice. Walk down from the top bit: a slice whose members share the bits above
        ``bit`` splits at ``bit`` into the half that agrees with ``t`` (nearer than every member
        of the other half) and the other. Take the near half whole when it is too small, else
        descend into it; small slices are sorted outright.
        """
        s = self._sorted
        lo, hi, bit = 0, len(s), ID_BITS - 1
        out: list[int] = []
        while True:
            size = hi - lo
            if size <= want or size <= _SORT_BELOW:
                out.extend(sorted([x ^ t for x in s[lo:hi]])[:want])
                return out
            split = ((s[lo] >> bit) | 1) << bit  # the slice's prefix, then a 1 at ``bit``
            mid = bisect_left(s, split, lo, hi)
            if (t >> bit) & 1:
                near_lo, near_hi, far_lo, far_hi = mid, hi, lo, mid
            else:
                near_lo, near_hi, far_lo, far_hi = lo, mid, mid, hi
            bit -= 1
            if near_hi - near_lo >= want:
                lo, hi = near_lo, near_hi
                continue
            out.extend(sorted([x ^ t for x in s[near_lo:near_hi]]))
            want -= near_hi - near_lo
            lo, hi = far_lo, far_hi

    # -- updates ---------------------------------------------------------------------------------

    def update(self, node_id: NodeId, now: float) -> NodeId | None:
        """Record that ``node_id`` was seen (it answered or sent a valid message).

        Returns the oldest contact of a full bucket that the owner should ping before it can be
        replaced by ``node_id`` (which waits in the replacement cache), else ``None``.
        """
        if node_id == self.own_id:
            return None
        c = self._index.get(node_id)
        if c is not None:  # the common case: a known contact moves to the tail of its bucket
            contacts = self._buckets[ID_BITS - (c.n ^ self._own_int).bit_length()].contacts
            if contacts[-1] is not c:
                contacts.remove(c)
                contacts.append(c)
            c.last_seen = now
            c.failures = 0
            return None
        index = bucket_index(self.own_id, node_id)
        b = self._buckets.get(index)
        if b is None:
            b = self._buckets[index] = Bucket([], [], now)
        if len(b.contacts) < self.k:
            self._add(b, Contact(node_id, now))
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
        c = b.contacts.pop(i)
        del self._index[node_id]
        del self._sorted[bisect_left(self._sorted, c.n)]
        self._size -= 1
        if b.replacements:
            self._add(b, Contact(b.replacements.pop(0), b.last_touched))
        return True

    def _add(self, b: Bucket, c: Contact) -> None:
        b.contacts.append(c)
        self._index[c.id] = c
        insort(self._sorted, c.n)
        self._size += 1

    def seed_bucket(
        self, index: int, contacts: list[tuple[NodeId, int]], replacements: list[NodeId], now: float
    ) -> None:
        """Fill an empty bucket at once from a global view (a simulator's oracle bootstrap):
        ``contacts`` as ``(id, id as int)`` pairs, at most ``k`` (the int is shared, not copied:
        100,000 tables hold 25 M contacts), then at most ``k`` replacements."""
        if self._buckets.get(index) is not None or len(contacts) > self.k:
            raise ValueError("seed_bucket fills one empty bucket with at most k contacts")
        b = self._buckets[index] = Bucket([], list(replacements[: self.k]), now)
        for node_id, n in contacts:
            if ID_BITS - (n ^ self._own_int).bit_length() != index:
                raise ValueError("a seeded contact is not in its bucket")
            c = Contact.__new__(Contact)
            c.id, c.last_seen, c.failures, c.n = node_id, now, 0, n
            b.contacts.append(c)
            self._index[node_id] = c
            self._sorted.append(n)
        self._size += len(contacts)
        self._sorted.sort()
