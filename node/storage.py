"""Record and provider storage with expiry (sans-IO: ``now`` is passed in).

Rules:
- A primary copy lives ``record_ttl_s`` from its last (re-)store; a cached copy (stored along a
  lookup path) ``cache_ttl_s``. An identical re-store refreshes the TTL and is acknowledged.
- A better record (``records.better``) replaces a worse one; a worse one is refused ("stale"), so
  a lagging replica can never roll a key back.
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
from dataclasses import dataclass

from node.ids import NodeId
from node.records import ProviderRecord, Record, record_order


class PutResult(enum.Enum):
    STORED = "stored"  # new key, or a better record replaced the old one
    REFRESHED = "refreshed"  # the identical record: TTL refreshed
    STALE = "stale"  # we hold a better record
    FULL = "full"  # storage limit reached
    IGNORED = "ignored"  # a cached copy of something we hold as primary

    @property
    def ok(self) -> bool:
        return self in (PutResult.STORED, PutResult.REFRESHED, PutResult.IGNORED)


@dataclass(slots=True)
class Entry:
    record: Record
    expires_at: float
    cached: bool
    stored_at: float


class RecordStore:
    def __init__(self, record_ttl_s: float, cache_ttl_s: float, max_records: int) -> None:
        self.record_ttl_s = record_ttl_s
        self.cache_ttl_s = cache_ttl_s
        self.max_records = max_records
        self._entries: dict[bytes, Entry] = {}
        self._heap: list[tuple[float, bytes]] = []
        self.changed: set[bytes] | None = None  # keys changed since taken (node.durability)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, record: Record, now: float, cached: bool = False) -> PutResult:
        cur = self._entries.get(record.key)
        if cur is not None and cur.expires_at <= now:
            cur = None
        ttl = self.cache_ttl_s if cached else self.record_ttl_s
        if cur is None:
            if record.key not in self._entries and len(self._entries) >= self.max_records:
                return PutResult.FULL
            self._set(Entry(record, now + ttl, cached, now))
            return PutResult.STORED
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
        self._set(Entry(record, now + ttl, cached, now))
        return PutResult.STORED

    def _set(self, e: Entry) -> None:
        self._entries[e.record.key] = e
        heapq.heappush(self._heap, (e.expires_at, e.record.key))
        if self.changed is not None:
            self.changed.add(e.record.key)

    def restore(self, record: Record, expires_at: float, cached: bool, now: float) -> None:
        """Put back an entry loaded from disk (not marked as changed; the caller checked it)."""
        if expires_at > now and len(self._entries) < self.max_records:
            self._entries[record.key] = Entry(record, expires_at, cached, now)
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
        r = self.get(key, now)
        return r is not None and record_order(r) >= (ts, pub)

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
                out.append(e)
                if self.changed is not None:
                    self.changed.add(key)
        return out


@dataclass(slots=True)
class ProviderEntry:
    provider: ProviderRecord
    expires_at: float


class ProviderStore:
    def __init__(self, ttl_s: float, max_per_topic: int, max_topics: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_per_topic = max_per_topic
        self.max_topics = max_topics
        self._topics: dict[bytes, dict[NodeId, ProviderEntry]] = {}
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
            self._topics.setdefault(p.topic, {})[p.node] = ProviderEntry(p, expires_at)

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
        entries[p.node] = ProviderEntry(p, now + self.ttl_s)
        live = [e for e in entries.values() if not e.provider.leave and e.expires_at > now]
        while len(live) > self.max_per_topic:
            oldest = min(live, key=lambda e: e.provider.ts)
            del entries[oldest.provider.node]
            live.remove(oldest)
            self._touched.append(oldest.provider.node)
        return PutResult.STORED

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
                out.append(entries.pop(node_id).provider)
                if self.changed is not None:
                    self.changed.add((topic, node_id))
            if not entries:
                del self._topics[topic]
        return out
