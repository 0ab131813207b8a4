"""Events the protocol core emits (pulled with ``DhtProtocol.next_event()``), and the runtime's own.

Operation results arrive as ``OpCompleted`` carrying one of the ``*Result`` dataclasses; the rest
report state changes the runtime publishes or acts on.

Publication is generic: every event the node publishes is a :class:`Notice` — it names its
control-plane topic (``TOPIC``) and builds its payload (``payload(names)``; ``names`` turns key
and topic ids back into the strings the API was given, when this node knows them). The runtime
hands notices to its listeners; the control plane sends ``[TOPIC, payload]``. Events without a
topic (``OpCompleted``, ``PeerUnresponsive``, ...) are acted on by the runtime and not published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

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

    def payload(self, names: Names) -> dict[str, Any]:
        raise NotImplementedError


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
class LookupDone(Notice):
    kind: str  # "find_node" | "find_value" | "get_peers"
    target: bytes
    hops: int
    duration_s: float
    found: bool
    contacted: int
    failed: int

    TOPIC: ClassVar[str] = "lookup.done"

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


@dataclass(frozen=True, slots=True)
class RecordStored(Notice):
    record: Record
    cached: bool
    local: bool  # stored by this node's own API call
    source: NodeId | None

    TOPIC: ClassVar[str] = "record.stored"

    def payload(self, names: Names) -> dict[str, Any]:
        body: dict[str, Any] = {
            "key_id": self.record.key.hex(),
            "publisher": self.record.pub.hex(),
            "record_ts": self.record.ts,
            "size": len(self.record.data),
            "cached": self.cached,
            "origin": "local" if self.local else "remote",
        }
        name = names.key_name(self.record.key) if self.local else None
        if name is not None:
            body["key"] = name
        return body


@dataclass(frozen=True, slots=True)
class RecordExpired(Notice):
    key: bytes
    pub: NodeId
    cached: bool

    TOPIC: ClassVar[str] = "record.expired"

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
class PeerMisbehaved:
    peer: NodeId
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class SignalReceived:
    source: NodeId
    payload: bytes


@dataclass(frozen=True, slots=True)
class MaintenanceRefresh(Notice):
    buckets: int

    TOPIC: ClassVar[str] = "maintenance.refresh"

    def payload(self, names: Names) -> dict[str, Any]:
        return {"buckets": self.buckets}


@dataclass(frozen=True, slots=True)
class MaintenanceRepublish(Notice):
    keys: int

    TOPIC: ClassVar[str] = "maintenance.republish"

    def payload(self, names: Names) -> dict[str, Any]:
        return {"keys": self.keys}


@dataclass(frozen=True, slots=True)
class MaintenanceRepair(Notice):
    keys_checked: int
    replicas_restored: int

    TOPIC: ClassVar[str] = "maintenance.repair"

    def payload(self, names: Names) -> dict[str, Any]:
        return {"keys_checked": self.keys_checked, "replicas_restored": self.replicas_restored}


@dataclass(frozen=True, slots=True)
class TopicPeerFound(Notice):
    topic: bytes
    provider: ProviderRecord

    TOPIC: ClassVar[str] = "topic.peer"

    def payload(self, names: Names) -> dict[str, Any]:
        return {
            "topic": topic_label(names, self.topic),
            "topic_id": self.topic.hex(),
            "peer": self.provider.node.hex(),
            "port": self.provider.port or None,
            "meta": self.provider.meta_value(),
        }


@dataclass(frozen=True, slots=True)
class TopicPeerLost(Notice):
    topic: bytes
    peer: NodeId
    reason: str  # "left" | "expired"

    TOPIC: ClassVar[str] = "topic.peer_lost"

    def payload(self, names: Names) -> dict[str, Any]:
        return {
            "topic": topic_label(names, self.topic),
            "topic_id": self.topic.hex(),
            "peer": self.peer.hex(),
            "reason": str(self.reason),
        }


# -- the runtime's own notices (not emitted by the core) -----------------------------------------


@dataclass(frozen=True, slots=True)
class PeerConnected(Notice):
    """An authenticated link to ``peer`` is up (not repeated when a link is replaced)."""

    peer: NodeId

    TOPIC: ClassVar[str] = "peer.connected"

    def payload(self, names: Names) -> dict[str, Any]:
        return {"peer": self.peer.hex()}


@dataclass(frozen=True, slots=True)
class PeerDisconnected(Notice):
    peer: NodeId
    reason: str

    TOPIC: ClassVar[str] = "peer.disconnected"

    def payload(self, names: Names) -> dict[str, Any]:
        return {"peer": self.peer.hex(), "reason": self.reason}


STATS_LATENCY_PERCENTILES = (50, 90, 99)


def percentiles(samples: list[float], pcts: tuple[int, ...]) -> dict[str, float | None]:
    """``{"p50": ..., ...}`` by nearest rank; None for every percentile of no samples."""
    if not samples:
        return {f"p{p}": None for p in pcts}
    s = sorted(samples)
    return {f"p{p}": s[min(len(s) - 1, int(len(s) * p / 100))] for p in pcts}


@dataclass(frozen=True, slots=True)
class NodeStats(Notice):
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

    TOPIC: ClassVar[str] = "node.stats"

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
            "signaling_connected": self.signaling_connected,
            "topics_joined": self.topics_joined,
        }


Event = (
    OpCompleted
    | LookupDone
    | RecordStored
    | RecordExpired
    | ContactAdded
    | ContactRemoved
    | PeerUnresponsive
    | PeerMisbehaved
    | SignalReceived
    | MaintenanceRefresh
    | MaintenanceRepublish
    | MaintenanceRepair
    | TopicPeerFound
    | TopicPeerLost
)
