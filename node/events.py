"""Events the protocol core emits (pulled with ``DhtProtocol.next_event()``).

Operation results arrive as ``OpCompleted`` carrying one of the ``*Result`` dataclasses; the rest
report state changes the runtime publishes or acts on.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.ids import NodeId
from node.records import ProviderRecord, Record


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
class LookupDone:
    kind: str  # "find_node" | "find_value" | "get_peers"
    target: bytes
    hops: int
    duration_s: float
    found: bool
    contacted: int
    failed: int


@dataclass(frozen=True, slots=True)
class RecordStored:
    record: Record
    cached: bool
    local: bool  # stored by this node's own API call
    source: NodeId | None


@dataclass(frozen=True, slots=True)
class RecordExpired:
    key: bytes
    pub: NodeId
    cached: bool


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
class MaintenanceRefresh:
    buckets: int


@dataclass(frozen=True, slots=True)
class MaintenanceRepublish:
    keys: int


@dataclass(frozen=True, slots=True)
class MaintenanceRepair:
    keys_checked: int
    replicas_restored: int


@dataclass(frozen=True, slots=True)
class TopicPeerFound:
    topic: bytes
    provider: ProviderRecord


@dataclass(frozen=True, slots=True)
class TopicPeerLost:
    topic: bytes
    peer: NodeId
    reason: str  # "left" | "expired"


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
