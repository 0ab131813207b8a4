"""Record and provider storage with expiry (sans-IO: ``now`` is passed in).

Rules:
- A primary copy lives ``record_ttl_s`` from its last (re-)store; a cached copy (stored along a
  lookup path) ``cache_ttl_s``. An identical re-store refreshes the TTL and is acknowledged.
- A better record (``records.better``) replaces a worse one; a worse one is refused ("stale"), so
  a lagging replica can never roll a key back.
- Owned kinds (``node.owned``): a MUTABLE record replaces the held one only with a higher ``seq``
  (``seq_not_newer`` otherwise) and, with a CAS, only when the held seq is the expected one
  (``cas_mismatch``; nothing held: accepted, this holder may simply have missed earlier
  versions). An OPEN record is refused where an owned one is held (``owned``).
- Quotas (``node.quotas.Ledger``): every entry is charged to the store, its publisher and the
  peer that sent it, and released when replaced or expired; a store over a quota is refused
  (``quota``, the detail in ``last_reason``). Entries are plain ``Record``s of any kind, so a
  persistence layer can keep them as ``codec.encode_record`` bytes.
- A cached copy never downgrades a primary copy; a primary store upgrades a cached one.
- Expired entries are invisible at once (``get`` checks the deadline) and deleted by ``expire``,
  which reports them so that nothing expired is ever served, repaired or re-replicated.
- Providers: per topic, one entry per announcer (the best by ts), capped per topic (the oldest is
  evicted). A signed ``leave`` replaces the announcement with a tombstone that blocks older
  announcements until it expires.
"""

from __future__ import annotations

import enum
import heapq
from collections import Counter
from dataclasses import dataclass

from node.ids import NodeId
from node.quotas import Ledger, StoreLimits, record_cost
from node.records import ProviderRecord, Record, RecordKind, record_order

_UNLIMITED = StoreLimits(1 << 62, 1 << 62, 1 << 62, 1 << 62, 1 << 62)


class PutResult(enum.Enum):
    STORED = "stored"  # new key, or a better record replaced the old one
    REFRESHED = "refreshed"  # the identical record: TTL refreshed
    STALE = "stale"  # we hold a better record
    FULL = "full"  # storage limit reached
    IGNORED = "ignored"  # a cached copy of something we hold as primary
    SEQ_NOT_NEWER = "seq_not_newer"  # a MUTABLE record whose seq is not above the held one
    CAS_MISMATCH = "cas_mismatch"  # the held seq is not the one the write expected
    OWNED = "owned"  # an OPEN record where an owned (MUTABLE/IMMUTABLE) one is held
    QUOTA = "quota"  # over a quota of the store, the publisher or the sending peer

    @property
    def ok(self) -> bool:
        return self in (PutResult.STORED, PutResult.REFRESHED, PutResult.IGNORED)


@dataclass(slots=True)
class Entry:
    record: Record
    expires_at: float
    cached: bool
    stored_at: float
    peer: NodeId | None = None  # who sent it (None: we wrote it)

    @property
    def cost(self) -> int:
        return record_cost(len(self.record.data), len(self.record.salt))


def _owned_conflict(record: Record, cur: Record, cas: int | None) -> PutResult | None:
    """Why ``record`` may not replace ``cur`` under the owned-record rules (None: it may)."""
    if record.kind is RecordKind.OPEN:
        return PutResult.OWNED if cur.kind is not RecordKind.OPEN else None
    if record.kind is RecordKind.MUTABLE and cur.kind is RecordKind.MUTABLE:
        if cas is not None and cur.seq != cas:
            return PutResult.CAS_MISMATCH
        if record.seq <= cur.seq:
            return PutResult.SEQ_NOT_NEWER
    return None


class RecordStore:
    def __init__(
        self,
        record_ttl_s: float,
        cache_ttl_s: float,
        max_records: int,
        limits: StoreLimits = _UNLIMITED,
    ) -> None:
        self.record_ttl_s = record_ttl_s
        self.cache_ttl_s = cache_ttl_s
        self.max_records = max_records
        self.ledger = Ledger(limits)
        self.last_reason = ""  # the detail of the last QUOTA refusal
        self._entries: dict[bytes, Entry] = {}
        self._heap: list[tuple[float, bytes]] = []
        self.changed: set[bytes] | None = None  # keys changed since taken (node.durability)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_used(self) -> int:
        return self.ledger.total_bytes

    def put(
        self,
        record: Record,
        now: float,
        cached: bool = False,
        peer: NodeId | None = None,
        cas: int | None = None,
    ) -> PutResult:
        cur = self._entries.get(record.key)
        if cur is not None and cur.expires_at <= now:
            cur = None
        ttl = self.cache_ttl_s if cached else self.record_ttl_s
        if cur is not None and cur.record != record:
            conflict = _owned_conflict(record, cur.record, cas)
            if conflict is not None:
                return conflict
        if cur is None:
            if record.key not in self._entries and len(self._entries) >= self.max_records:
                return PutResult.FULL
            return self._insert(record, now, ttl, cached, peer)
        if cur.record == record:
            if cached and not cur.cached:
                return PutResult.IGNORED
            cur.cached = cached
            cur.expires_at = max(cur.expires_at, now + ttl) if cached else now + ttl
            heapq.heappush(self._heap, (cur.expires_at, record.key))
            if self.changed is not None:
                self.changed.add(record.key)
            return PutResult.REFRESHED
        if record_order(record) < record_order(cur.record):
            return PutResult.STALE
        if cached and not cur.cached:
            # A newer record seen on a lookup path replaces an older primary copy, as a primary
            # would: the older one is superseded everywhere it is found.
            cached = False
            ttl = self.record_ttl_s
        return self._insert(record, now, ttl, cached, peer)

    def _insert(
        self, record: Record, now: float, ttl: float, cached: bool, peer: NodeId | None
    ) -> PutResult:
        """Replace whatever entry ``record.key`` has (live or expired) if the quotas allow."""
        new = Entry(record, now + ttl, cached, now, peer)
        old = self._entries.get(record.key)
        freed = (old.cost, old.record.pub, old.peer) if old is not None else (0, b"", None)
        reason = self.ledger.admit(new.cost, record.pub, peer, freed)
        if reason is not None:
            self.last_reason = reason
            return PutResult.QUOTA
        if old is not None:
            self.ledger.release(old.cost, old.record.pub, old.peer)
        self.ledger.charge(new.cost, record.pub, peer)
        self._set(new)
        return PutResult.STORED

    def discard(self, record: Record) -> bool:
        """Delete ``record`` if it is the one held at its key (the heap entry goes stale)."""
        e = self._entries.get(record.key)
        if e is None or e.record != record:
            return False
        del self._entries[record.key]
        self.ledger.release(e.cost, record.pub, e.peer)
        if self.changed is not None:
            self.changed.add(record.key)
        return True

    def _set(self, e: Entry) -> None:
        self._entries[e.record.key] = e
        heapq.heappush(self._heap, (e.expires_at, e.record.key))
        if self.changed is not None:
            self.changed.add(e.record.key)

    def restore(self, record: Record, expires_at: float, cached: bool, now: float) -> None:
        """Put back an entry loaded from disk (not marked as changed; the caller checked it)."""
        if expires_at > now and len(self._entries) < self.max_records:
            e = Entry(record, expires_at, cached, now)
            self.ledger.charge(e.cost, record.pub, None)
            self._entries[record.key] = e
            heapq.heappush(self._heap, (expires_at, record.key))

    def get(self, key: bytes, now: float) -> Record | None:
        e = self._entries.get(key)
        if e is None or e.expires_at <= now:
            return None
        return e.record

    def entry(self, key: bytes, now: float) -> Entry | None:
        e = self._entries.get(key)
        return e if e is not None and e.expires_at > now else None

    def has_same_or_better(self, key: bytes, ts: int, pub: bytes, now: float) -> bool:
        """HAS_VALUE carries only (ts, pub): for MUTABLE records the writer's ts grows with its
        seq (``owned.finalize``), so (ts, pub) orders one address's versions as seq does."""
        r = self.get(key, now)
        return r is not None and (r.ts, r.pub) >= (ts, pub)

    def primary_entries(self, now: float) -> list[Entry]:
        return [e for e in self._entries.values() if not e.cached and e.expires_at > now]

    def entries(self, now: float) -> list[Entry]:
        return [e for e in self._entries.values() if e.expires_at > now]

    def next_expiry(self) -> float | None:
        while self._heap:
            at, key = self._heap[0]
            e = self._entries.get(key)
            if e is None or e.expires_at != at:
                heapq.heappop(self._heap)  # stale heap entry
                continue
            return at
        return None

    def expire(self, now: float) -> list[Entry]:
        """Delete and return every entry whose deadline has passed."""
        out: list[Entry] = []
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            e = self._entries.get(key)
            if e is not None and e.expires_at == at:
                del self._entries[key]
                self.ledger.release(e.cost, e.record.pub, e.peer)
                out.append(e)
                if self.changed is not None:
                    self.changed.add(key)
        return out


@dataclass(slots=True)
class ProviderEntry:
    provider: ProviderRecord
    expires_at: float


class ProviderStore:
    def __init__(
        self,
        ttl_s: float,
        max_per_topic: int,
        max_topics: int = 10_000,
        max_per_announcer: int = 1 << 62,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_per_topic = max_per_topic
        self.max_topics = max_topics
        self.max_per_announcer = max_per_announcer  # topics one node may be announced under
        self._topics: dict[bytes, dict[NodeId, ProviderEntry]] = {}
        self._per_node: Counter[NodeId] = Counter()
        self.changed: set[tuple[bytes, NodeId]] | None = None  # (topic, node) since taken
        self._touched: list[NodeId] = []  # the announcers the last put changed

    def put(self, p: ProviderRecord, now: float) -> PutResult:
        """Store an announcement or a leave tombstone."""
        result = self._put(p, now)
        if self.changed is not None and result in (PutResult.STORED, PutResult.REFRESHED):
            self.changed.update((p.topic, n) for n in self._touched)
        return result

    def entry(self, topic: bytes, node: NodeId, now: float) -> ProviderEntry | None:
        e = self._topics.get(topic, {}).get(node)
        return e if e is not None and e.expires_at > now else None

    def restore(self, p: ProviderRecord, expires_at: float, now: float) -> None:
        """Put back an entry loaded from disk (not marked as changed)."""
        if expires_at > now:
            entries = self._topics.setdefault(p.topic, {})
            if p.node not in entries:
                self._per_node[p.node] += 1
            entries[p.node] = ProviderEntry(p, expires_at)

    def _put(self, p: ProviderRecord, now: float) -> PutResult:
        self._touched = [p.node]
        entries = self._topics.get(p.topic)
        if entries is None:
            if len(self._topics) >= self.max_topics:
                self.expire(now)
                if len(self._topics) >= self.max_topics:
                    return PutResult.FULL
            entries = self._topics[p.topic] = {}
        cur = entries.get(p.node)
        if cur is not None and cur.expires_at > now:
            if cur.provider == p:
                cur.expires_at = now + self.ttl_s
                return PutResult.REFRESHED
            if p.ts < cur.provider.ts or (p.ts == cur.provider.ts and not p.leave):
                return PutResult.STALE
        if cur is None:
            if self._per_node[p.node] >= self.max_per_announcer:
                if not entries:
                    del self._topics[p.topic]
                return PutResult.QUOTA
            self._per_node[p.node] += 1
        entries[p.node] = ProviderEntry(p, now + self.ttl_s)
        live = [e for e in entries.values() if not e.provider.leave and e.expires_at > now]
        while len(live) > self.max_per_topic:
            oldest = min(live, key=lambda e: e.provider.ts)
            self._forget(entries, oldest.provider.node)
            live.remove(oldest)
            self._touched.append(oldest.provider.node)
        return PutResult.STORED

    def _forget(self, entries: dict[NodeId, ProviderEntry], node: NodeId) -> ProviderEntry:
        self._per_node[node] -= 1
        if self._per_node[node] <= 0:
            del self._per_node[node]
        return entries.pop(node)

    def get(self, topic: bytes, now: float, include_leaves: bool = False) -> list[ProviderRecord]:
        entries = self._topics.get(topic, {})
        return [
            e.provider
            for e in entries.values()
            if e.expires_at > now and (include_leaves or not e.provider.leave)
        ]

    def topics(self) -> list[bytes]:
        return list(self._topics)

    def count(self) -> int:
        return sum(len(v) for v in self._topics.values())

    def expire(self, now: float) -> list[ProviderRecord]:
        out: list[ProviderRecord] = []
        for topic in list(self._topics):
            entries = self._topics[topic]
            for node_id in [n for n, e in entries.items() if e.expires_at <= now]:
                out.append(self._forget(entries, node_id).provider)
                if self.changed is not None:
                    self.changed.add((topic, node_id))
            if not entries:
                del self._topics[topic]
        return out
