"""Events the protocol core emits (pulled with ``DhtProtocol.next_event()``), and the runtime's own.

Operation results arrive as ``OpCompleted`` carrying one of the ``*Result`` dataclasses; the rest
report state changes the runtime publishes or acts on.

Publication is generic: every event the node publishes is a :class:`Notice` — it names its
control-plane topic (``TOPIC``, declared as ``class X(Notice, topic="...")``) and builds its
payload (``payload(names)``; ``names`` turns key and topic ids back into the strings the API was
given, when this node knows them). The runtime hands notices to its listeners; the control plane
sends ``[TOPIC, payload]``. Events without a topic (``OpCompleted``, ``PeerUnresponsive``, ...)
are acted on by the runtime and not published.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, cast

from node.ids import NodeId
from node.records import ProviderRecord, Record


class Names(Protocol):
    """The user strings behind hashed key and topic ids, as far as this node knows them."""

    def key_name(self, key: bytes) -> str | None: ...

    def topic_name(self, topic: bytes) -> str | None: ...


class Notice:
    """An event the node publishes: ``TOPIC`` and ``payload`` (see the module docstring)."""

    __slots__ = ()
    TOPIC: ClassVar[str]

    def __init_subclass__(cls, *, topic: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if topic:  # (dataclass(slots=True) re-creates the class without the keyword)
            cls.TOPIC = topic

    def payload(self, names: Names) -> dict[str, Any]:
        """By default the fields by name, bytes (ids) in hex, enums as their string."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(cast(Any, self))}


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return str(value)
    return value


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def topic_label(names: Names, topic: bytes) -> str:
    """The topic's name when known, else its id in hex."""
    name = names.topic_name(topic)
    return name if name is not None else topic.hex()


@dataclass(frozen=True, slots=True)
class FindNodeResult:
    target: bytes
    closest: tuple[NodeId, ...]
    hops: int
    duration_s: float
    contacted: int
    failed: int


@dataclass(frozen=True, slots=True)
class GetResult:
    key: bytes
    record: Record | None  # None: not found
    hops: int
    duration_s: float
    contacted: int
    failed: int
    local: bool = False  # answered from the own store


@dataclass(frozen=True, slots=True)
class StoreResult:
    key: bytes
    ok: bool
    acks: int
    attempts: int
    quorum: int
    duration_s: float
    record: Record
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PingResult:
    peer: NodeId
    ok: bool
    rtt_s: float


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    topic: bytes
    ok: bool
    acks: int
    attempts: int
    quorum: int
    leave: bool
    duration_s: float


@dataclass(frozen=True, slots=True)
class GetPeersResult:
    topic: bytes
    providers: tuple[ProviderRecord, ...]  # deduplicated by announcer, best ts each
    left: tuple[NodeId, ...]  # announcers seen with a leave tombstone
    hops: int
    duration_s: float
    contacted: int


OpResult = FindNodeResult | GetResult | StoreResult | PingResult | AnnounceResult | GetPeersResult


@dataclass(frozen=True, slots=True)
class OpCompleted:
    op_id: int
    result: OpResult


@dataclass(frozen=True, slots=True)
class LookupDone(Notice, topic="lookup.done"):
    kind: str  # "find_node" | "find_value" | "get_peers"
    target: bytes
    hops: int
    duration_s: float
    found: bool
    contacted: int
    failed: int

    def payload(self, names: Names) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "target": self.target.hex(),
            "hops": self.hops,
            "duration_ms": _ms(self.duration_s),
            "found": self.found,
            "contacted": self.contacted,
            "failed": self.failed,
        }


def _record_body(record: Record, name: str | None, **extra: Any) -> dict[str, Any]:
    """A notice's fields for ``record`` (``name``: the key string, when this node knows it)."""
    body: dict[str, Any] = {
        "key_id": record.key.hex(),
        "publisher": record.pub.hex(),
        "record_ts": record.ts,
        **extra,
    }
    if name is not None:
        body["key"] = name
    return body


@dataclass(frozen=True, slots=True)
class RecordStored(Notice, topic="record.stored"):
    record: Record
    cached: bool
    local: bool  # stored by this node's own API call
    source: NodeId | None

    def payload(self, names: Names) -> dict[str, Any]:
        return _record_body(
            self.record,
            names.key_name(self.record.key) if self.local else None,
            size=len(self.record.data),
            cached=self.cached,
            origin="local" if self.local else "remote",
        )


@dataclass(frozen=True, slots=True)
class RecordUpdated(Notice, topic="record.updated"):
    """A new version of a key this node listens to (``source``: the holder that pushed it)."""

    record: Record
    source: NodeId

    def payload(self, names: Names) -> dict[str, Any]:
        return _record_body(
            self.record,
            names.key_name(self.record.key),
            value=self.record.data,
            source=self.source.hex(),
        )


@dataclass(frozen=True, slots=True)
class RecordExpired(Notice, topic="record.expired"):
    key: bytes
    pub: NodeId
    cached: bool

    def payload(self, names: Names) -> dict[str, Any]:
        return {"key_id": self.key.hex(), "publisher": self.pub.hex(), "cached": self.cached}


@dataclass(frozen=True, slots=True)
class ContactAdded:
    peer: NodeId


@dataclass(frozen=True, slots=True)
class ContactRemoved:
    peer: NodeId
    reason: str


@dataclass(frozen=True, slots=True)
class PeerUnresponsive:
    """A connected peer failed its liveness ping: the runtime should close the link."""

    peer: NodeId


@dataclass(frozen=True, slots=True)
class PeerLeft:
    """A connected peer said BYE: it is out of the routing table; the runtime closes the link."""

    peer: NodeId


@dataclass(frozen=True, slots=True)
class PeerMisbehaved:
    peer: NodeId
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class PeerBanned(Notice, topic="peer.banned"):
    """``peer`` kept flooding requests far over its rate: it is out of the routing table, and
    the runtime closes its link and refuses it for ``for_s`` seconds."""

    peer: NodeId
    reason: str
    for_s: float


@dataclass(frozen=True, slots=True)
class SignalReceived:
    source: NodeId
    payload: bytes


@dataclass(frozen=True, slots=True)
class MaintenanceRefresh(Notice, topic="maintenance.refresh"):
    buckets: int


@dataclass(frozen=True, slots=True)
class MaintenanceRepublish(Notice, topic="maintenance.republish"):
    keys: int


@dataclass(frozen=True, slots=True)
class MaintenanceRepair(Notice, topic="maintenance.repair"):
    keys_checked: int
    replicas_restored: int


@dataclass(frozen=True, slots=True)
class TopicPeerFound(Notice, topic="topic.peer"):
    topic: bytes
    provider: ProviderRecord

    def payload(self, names: Names) -> dict[str, Any]:
        return {
            "topic": topic_label(names, self.topic),
            "topic_id": self.topic.hex(),
            "peer": self.provider.node.hex(),
            "port": self.provider.port or None,
            "meta": self.provider.meta_value(),
        }


@dataclass(frozen=True, slots=True)
class TopicPeerLost(Notice, topic="topic.peer_lost"):
    topic: bytes
    peer: NodeId
    reason: str  # "left" | "expired"

    def payload(self, names: Names) -> dict[str, Any]:
        return {
            "topic": topic_label(names, self.topic),
            "topic_id": self.topic.hex(),
            "peer": self.peer.hex(),
            "reason": str(self.reason),
        }


# -- the runtime's own notices (not emitted by the core) -----------------------------------------


@dataclass(frozen=True, slots=True)
class PeerConnected(Notice, topic="peer.connected"):
    """An authenticated link to ``peer`` is up (not repeated when a link is replaced)."""

    peer: NodeId


@dataclass(frozen=True, slots=True)
class PeerDisconnected(Notice, topic="peer.disconnected"):
    peer: NodeId
    reason: str


STATS_LATENCY_PERCENTILES = (50, 90, 99)


def percentiles(samples: list[float], pcts: tuple[int, ...]) -> dict[str, float | None]:
    """``{"p50": ..., ...}`` by nearest rank; None for every percentile of no samples."""
    if not samples:
        return {f"p{p}": None for p in pcts}
    s = sorted(samples)
    return {f"p{p}": s[min(len(s) - 1, int(len(s) * p / 100))] for p in pcts}


@dataclass(frozen=True, slots=True)
class NodeStats(Notice, topic="node.stats"):
    """The periodic heartbeat (and the ``stats`` command): counters, latencies, sizes."""

    id: NodeId
    uptime_s: float
    messages_in: dict[str, int]
    messages_out: dict[str, int]
    lookups: int
    lookup_latencies_s: tuple[float, ...]
    store_size: int
    providers_held: int
    connections: int
    routing_table_size: int
    dropped_malformed: int
    dropped_unexpected: int
    requests_failed: int
    records_rejected: int
    dials_started: int
    links_opened: int
    dials_failed: int
    hellos_rejected: int
    signaling_connected: bool
    topics_joined: int
    hellos_bad_version: int = 0
    store_bytes: int = 0  # the record store's accounted bytes (node.quotas.record_cost)
    refused: tuple[tuple[str, int], ...] = ()  # writes refused, by reason (quota, ...)
    rate_limited: int = 0  # requests answered ``rate_limited``
    rate_dropped: int = 0  # requests dropped unanswered (far over the rate)
    peers_banned: int = 0  # peers disconnected and refused for flooding (``PeerBanned``)
    link_paths: tuple[tuple[str, int], ...] = ()  # open links by path (host / srflx / relay)

    def payload(self, names: Names) -> dict[str, Any]:
        latencies_ms = [x * 1000 for x in self.lookup_latencies_s]
        return {
            "id": self.id.hex(),
            "uptime_s": round(self.uptime_s, 3),
            "messages_in": dict(self.messages_in),
            "messages_out": dict(self.messages_out),
            "lookups": self.lookups,
            "lookup_latency_ms": percentiles(latencies_ms, STATS_LATENCY_PERCENTILES),
            "store_size": self.store_size,
            "providers_held": self.providers_held,
            "connections": self.connections,
            "routing_table_size": self.routing_table_size,
            "dropped_malformed": self.dropped_malformed,
            "dropped_unexpected": self.dropped_unexpected,
            "requests_failed": self.requests_failed,
            "records_rejected": self.records_rejected,
            "dials_started": self.dials_started,
            "links_opened": self.links_opened,
            "dials_failed": self.dials_failed,
            "hellos_rejected": self.hellos_rejected,
            "hellos_bad_version": self.hellos_bad_version,
            "signaling_connected": self.signaling_connected,
            "topics_joined": self.topics_joined,
            "store_bytes": self.store_bytes,
            "refused": dict(self.refused),
            "refused_quota": sum(n for r, n in self.refused if r == "quota"),
            "rate_limited": self.rate_limited,
            "rate_dropped": self.rate_dropped,
            "peers_banned": self.peers_banned,
            "link_paths": dict(self.link_paths),
        }


Event = (
    OpCompleted
    | LookupDone
    | RecordStored
    | RecordUpdated
    | RecordExpired
    | ContactAdded
    | ContactRemoved
    | PeerUnresponsive
    | PeerLeft
    | PeerMisbehaved
    | PeerBanned
    | SignalReceived
    | MaintenanceRefresh
    | MaintenanceRepublish
    | MaintenanceRepair
    | TopicPeerFound
    | TopicPeerLost
)
