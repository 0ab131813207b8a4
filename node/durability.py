"""What must reach disk, and which answers wait for it (sans-IO half of persistence).

Theory of operation (group commit, the aioquic pattern):

- The stores mark what changed (``RecordStore.changed``, ``ProviderStore.changed``,
  ``Maintenance.authored_changed``: sets of keys). ``take_batch(now)`` turns the marks into one
  ``Batch`` of rows — the *current* state of each marked key, or its deletion — numbered by a
  generation, and clears the marks. Many changes to one key between two commits cost one row.
- The I/O side (``node.persist``) commits a batch in one transaction and then calls
  ``persisted(gen)``. While a commit runs, new changes pile up and go in the next batch, so under
  load a commit covers many STOREs (one fsync for all of them).
- A write acknowledgement (STORE_ACK/ANNOUNCE_ACK that says ok) is *held* while anything is
  uncommitted, tagged with the generation that will contain its change, and released into the
  outgoing queue by ``persisted``. So an acknowledged record is on disk: a SIGKILL after the
  ack cannot lose it.
- Rows carry records as the codec's wire bytes (a STORE / ANNOUNCE message with rid 0), so
  every record kind the codec knows is persisted without this module knowing its fields.
  Deadlines are stored as wall-clock milliseconds (monotonic time does not survive a restart).

Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from node import codec
from node.ids import NodeId
from node.messages import Announce, Outgoing, Store
from node.records import ProviderRecord, Record

RESTORED_TOPICS_AFTER_S = 5.0  # a restarted node announces its joined topics again after this

if TYPE_CHECKING:
    from node.maintenance import Maintenance
    from node.routing import RoutingTable
    from node.storage import ProviderStore, RecordStore
    from node.topics import Topics


@dataclass(frozen=True, slots=True)
class RecordRow:
    key: bytes
    blob: bytes  # codec-encoded STORE(rid 0, record, cached)
    expires_ms: int
    cached: bool


@dataclass(frozen=True, slots=True)
class ProviderRow:
    topic: bytes
    node: bytes
    blob: bytes  # codec-encoded ANNOUNCE(rid 0, provider)
    expires_ms: int


@dataclass(frozen=True, slots=True)
class AuthoredRow:
    key: bytes
    blob: bytes  # codec-encoded STORE(rid 0, record, False)


@dataclass(frozen=True, slots=True)
class JoinedRow:
    """A topic the node joined: discovered, and announced when ``port`` is not None."""

    topic: bytes
    port: int | None
    meta: bytes


@dataclass(slots=True)
class Batch:
    """One transaction: upserts and deletes of records, providers and authored records."""

    gen: int
    records: list[RecordRow] = field(default_factory=list)
    record_deletes: list[bytes] = field(default_factory=list)
    providers: list[ProviderRow] = field(default_factory=list)
    provider_deletes: list[tuple[bytes, bytes]] = field(default_factory=list)
    authored: list[AuthoredRow] = field(default_factory=list)
    authored_deletes: list[bytes] = field(default_factory=list)
    joined: list[JoinedRow] = field(default_factory=list)
    joined_deletes: list[bytes] = field(default_factory=list)
    contacts: list[bytes] | None = None  # the routing table's contacts, when they changed

    def __len__(self) -> int:
        return (
            len(self.records) + len(self.record_deletes) + len(self.providers)
            + len(self.provider_deletes) + len(self.authored) + len(self.authored_deletes)
            + len(self.joined) + len(self.joined_deletes)
            + (len(self.contacts) if self.contacts is not None else 0)
        )  # fmt: skip


def record_blob(record: Record, cached: bool = False) -> bytes:
    return codec.encode(Store(0, record, cached))


def provider_blob(provider: ProviderRecord) -> bytes:
    return codec.encode(Announce(0, provider))


def record_from_blob(blob: bytes) -> tuple[Record, bool] | None:
    """The record and its ``cached`` flag, or None for a row this build cannot read."""
    try:
        msg = codec.decode(blob)
    except codec.DecodeError:
        return None
    return (msg.record, msg.cached) if isinstance(msg, Store) else None


def provider_from_blob(blob: bytes) -> ProviderRecord | None:
    try:
        msg = codec.decode(blob)
    except codec.DecodeError:
        return None
    return msg.provider if isinstance(msg, Announce) else None


class Durability:
    """The change marks of the stores, the generation counter and the held acknowledgements."""

    def __init__(
        self,
        records: RecordStore,
        providers: ProviderStore,
        maintenance: Maintenance,
        table: RoutingTable,
        topics: Topics,
    ) -> None:
        self._records, self._providers = records, providers
        self._maintenance, self._table, self._topics = maintenance, table, topics
        records.changed, providers.changed, maintenance.authored_changed = set(), set(), set()
        topics.changed = set()
        self._contacts: frozenset[NodeId] = frozenset()
        self.gen = 1  # the generation the next batch will carry
        self.done = 0  # the highest generation committed
        self._held: list[tuple[int, Outgoing]] = []

    def _contacts_changed(self) -> bool:
        return self._contacts != frozenset(c.id for c in self._table.contacts())

    @property
    def dirty(self) -> bool:
        return bool(
            self._records.changed
            or self._providers.changed
            or self._maintenance.authored_changed
            or self._topics.changed
        )

    @property
    def pending(self) -> bool:
        """Something is not yet on disk (marked, or in a commit still running)."""
        return self.dirty or self.done < self.gen - 1

    def hold(self, out: Outgoing) -> None:
        """Send ``out`` only once everything changed so far is committed."""
        self._held.append((self.gen, out))

    @property
    def held(self) -> int:
        return len(self._held)

    def take_batch(self, now: float, wall_offset_s: float, with_contacts: bool) -> Batch:
        """The rows of everything marked since the last batch (marks cleared)."""
        batch = Batch(self.gen)
        self.gen += 1

        def wall(at: float) -> int:
            return int((at + wall_offset_s) * 1000)

        assert self._records.changed is not None
        assert self._providers.changed is not None
        for key in self._records.changed:
            e = self._records.entry(key, now)
            if e is None:
                batch.record_deletes.append(key)
            else:
                blob = record_blob(e.record, e.cached)
                batch.records.append(RecordRow(key, blob, wall(e.expires_at), e.cached))
        self._records.changed.clear()
        for topic, node in self._providers.changed:
            p = self._providers.entry(topic, node, now)
            if p is None:
                batch.provider_deletes.append((topic, node))
            else:
                blob = provider_blob(p.provider)
                batch.providers.append(ProviderRow(topic, node, blob, wall(p.expires_at)))
        self._providers.changed.clear()
        authored = self._maintenance.authored
        assert self._maintenance.authored_changed is not None
        for key in self._maintenance.authored_changed:
            if key in authored:
                batch.authored.append(AuthoredRow(key, record_blob(authored[key][0])))
            else:
                batch.authored_deletes.append(key)
        self._maintenance.authored_changed.clear()
        assert self._topics.changed is not None
        for topic in self._topics.changed:
            jt = self._topics.joined.get(topic)
            if jt is None:
                batch.joined_deletes.append(topic)
            else:
                batch.joined.append(JoinedRow(topic, jt.port, jt.meta))
        self._topics.changed.clear()
        if with_contacts and self._contacts_changed():
            self._contacts = frozenset(c.id for c in self._table.contacts())
            batch.contacts = sorted(self._contacts)
        return batch

    def persisted(self, gen: int) -> list[Outgoing]:
        """Generation ``gen`` is committed: the held messages that may go now."""
        self.done = max(self.done, gen)
        ready = [out for g, out in self._held if g <= self.done]
        self._held = [(g, out) for g, out in self._held if g > self.done]
        return ready

    def restore(self, snapshot: Snapshot, now: float, wall_offset_s: float) -> None:
        """Load what a previous run committed; expired rows are skipped (and dropped on disk by
        the loader)."""

        def mono(ms: int) -> float:
            return ms / 1000 - wall_offset_s

        for row in snapshot.records:
            got = record_from_blob(row.blob)
            if got is not None:
                self._records.restore(got[0], mono(row.expires_ms), row.cached, now)
        for prow in snapshot.providers:
            p = provider_from_blob(prow.blob)
            if p is not None:
                self._providers.restore(p, mono(prow.expires_ms), now)
        for arow in snapshot.authored:
            got = record_from_blob(arow.blob)
            if got is not None:
                self._maintenance.authored_record(got[0], now)
        assert self._maintenance.authored_changed is not None
        self._maintenance.authored_changed.clear()
        for jrow in snapshot.joined:
            self._topics.restore(jrow.topic, jrow.port, jrow.meta, now + RESTORED_TOPICS_AFTER_S)
        self._contacts = frozenset(NodeId(c) for c in snapshot.contacts)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the database held at start (expired rows already left out)."""

    records: list[RecordRow]
    providers: list[ProviderRow]
    authored: list[AuthoredRow]
    contacts: list[bytes]
    joined: list[JoinedRow] = field(default_factory=list)
