"""Wire messages of the DHT protocol (DESIGN §5). Frozen, slotted dataclasses; no behaviour.

Every request carries a 64-bit request id ``rid``; its response echoes it: both derive from
``Rpc``, which owns the ``rid``. A response is accepted only from the peer the request went to and
only with one of the expected types (``RESPONSE_TYPES``; ``node.requests`` does the matching).
``Signal`` and ``Hello`` are not request/response and carry no rid.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, get_args

from node.ids import NodeId
from node.records import ProviderRecord, Record

PROTOCOL_VERSION: tuple[int, int] = (1, 0)
"""(major, minor) of the peer protocol (docs/protocol.md), carried in HELLO. A peer whose major
differs is refused; a higher minor only adds things an older peer may ignore."""
MAX_VERSION_PART = 0xFFFF


class MsgType(enum.IntEnum):
    HELLO = 0
    PING = 1
    PONG = 2
    FIND_NODE = 3
    NODES = 4
    FIND_VALUE = 5
    VALUE = 6
    STORE = 7
    STORE_ACK = 8
    HAS_VALUE = 9
    HAS_VALUE_ACK = 10
    SIGNAL = 11
    ANNOUNCE = 12
    ANNOUNCE_ACK = 13
    GET_PEERS = 14
    PEERS = 15
    FIND_NODE_STORE = 16
    NODES_ACK = 17
    BYE = 20  # the sender is leaving on purpose
    # 21-23: reserved. 24-29: owned records, quotas (docs/protocol.md).
    PUT = 24
    PUT_ACK = 25
    # 26 reserved
    RECORD = 27
    REFUSED = 28
    # 30-35: listen (docs/protocol.md §6.4)
    LISTEN = 30
    LISTEN_ACK = 31
    NOTIFY = 32


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a link: binds the sender's key to this connection (``cid``) and receiver."""

    public_key: bytes
    receiver: NodeId
    cid: str
    sig: bytes
    version: tuple[int, int] = PROTOCOL_VERSION
    type = MsgType.HELLO


@dataclass(frozen=True, slots=True)
class Rpc:
    """A request or a response: ``rid`` is the request id, echoed by the response."""

    rid: int
    type: ClassVar[MsgType]


@dataclass(frozen=True, slots=True)
class Ping(Rpc):
    type = MsgType.PING


@dataclass(frozen=True, slots=True)
class Pong(Rpc):
    type = MsgType.PONG


@dataclass(frozen=True, slots=True)
class FindNode(Rpc):
    target: NodeId
    type = MsgType.FIND_NODE


@dataclass(frozen=True, slots=True)
class Nodes(Rpc):
    nodes: tuple[NodeId, ...]
    type = MsgType.NODES


@dataclass(frozen=True, slots=True)
class FindValue(Rpc):
    key: bytes
    type = MsgType.FIND_VALUE


@dataclass(frozen=True, slots=True)
class Value(Rpc):
    record: Record
    nodes: tuple[NodeId, ...]
    type = MsgType.VALUE


@dataclass(frozen=True, slots=True)
class Store(Rpc):
    record: Record
    cached: bool
    type = MsgType.STORE


@dataclass(frozen=True, slots=True)
class WriteAck(Rpc):
    """The answer to a write (STORE or ANNOUNCE): ``reason`` says why it was refused."""

    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class StoreAck(WriteAck):
    type = MsgType.STORE_ACK


@dataclass(frozen=True, slots=True)
class HasValue(Rpc):
    key: bytes
    ts: int
    pub: NodeId
    type = MsgType.HAS_VALUE


@dataclass(frozen=True, slots=True)
class HasValueAck(Rpc):
    """``has`` = the receiver holds this record or a better one."""

    has: bool
    type = MsgType.HAS_VALUE_ACK


@dataclass(frozen=True, slots=True)
class Signal:
    """A relayed connection-setup payload (SDP offer/answer), routed greedily to ``target``."""

    sid: int
    source: NodeId
    target: NodeId
    hops_left: int
    payload: bytes
    type = MsgType.SIGNAL


NOT_CLOSEST = "not_closest"
"""The ``reason`` of a ``NodesAck`` whose sender did not store: it knows ``k`` nodes closer to
the key than itself. Not a refusal: the writer sends a plain STORE if the peer ends up among the
lookup's k closest after all."""


@dataclass(frozen=True, slots=True)
class FindNodeStore(Rpc):
    """A FIND_NODE that carries the record being written: the receiver answers like FIND_NODE
    and also stores ``record`` when it counts itself among the ``k`` closest to its key (fewer
    than ``k`` contacts closer than itself). Saves the write's separate STORE round."""

    target: NodeId
    record: Record
    type = MsgType.FIND_NODE_STORE


@dataclass(frozen=True, slots=True)
class NodesAck(WriteAck):
    """The answer to FIND_NODE_STORE: the closest contacts (as NODES) and the store outcome
    (``ok``; ``reason`` a storage outcome, a refusal, or ``NOT_CLOSEST``)."""

    nodes: tuple[NodeId, ...]
    type = MsgType.NODES_ACK


@dataclass(frozen=True, slots=True)
class Announce(Rpc):
    provider: ProviderRecord
    type = MsgType.ANNOUNCE


@dataclass(frozen=True, slots=True)
class AnnounceAck(WriteAck):
    type = MsgType.ANNOUNCE_ACK


@dataclass(frozen=True, slots=True)
class GetPeers(Rpc):
    topic: bytes
    type = MsgType.GET_PEERS


@dataclass(frozen=True, slots=True)
class Peers(Rpc):
    providers: tuple[ProviderRecord, ...]
    nodes: tuple[NodeId, ...]
    type = MsgType.PEERS


@dataclass(frozen=True, slots=True)
class Bye:
    """The sender leaves the network on purpose (scale down, SIGTERM): drop it from the routing
    table now instead of waiting for liveness. Not a request: no answer, no rid. It can only
    speak for the authenticated sender of the link it arrives on."""

    type = MsgType.BYE


@dataclass(frozen=True, slots=True)
class Put(Rpc):
    """Store an owned (MUTABLE or IMMUTABLE) record; ``cas``: the seq the holder must hold."""

    record: Record
    cas: int | None
    cached: bool
    type = MsgType.PUT


@dataclass(frozen=True, slots=True)
class PutAck(WriteAck):
    """``seq``: the seq the holder holds at that address after this write (0: none)."""

    seq: int
    type = MsgType.PUT_ACK


@dataclass(frozen=True, slots=True)
class RecordValue(Rpc):
    """The answer to FIND_VALUE when the holder's record is an owned one."""

    record: Record
    nodes: tuple[NodeId, ...]
    type = MsgType.RECORD


@dataclass(frozen=True, slots=True)
class Refused(Rpc):
    """Any request refused without being served (``reason``: ``rate_limited``, ...)."""

    reason: str
    type = MsgType.REFUSED


@dataclass(frozen=True, slots=True)
class Listen(Rpc):
    """Push every new version of ``key`` to the sender for ``ttl_s`` seconds (0: stop)."""

    key: bytes
    ttl_s: int
    type = MsgType.LISTEN


@dataclass(frozen=True, slots=True)
class ListenAck(Rpc):
    """``ttl_s``: the lifetime granted (the holder may shorten it); 0 with ``ok`` false."""

    ok: bool
    ttl_s: int
    type = MsgType.LISTEN_ACK


@dataclass(frozen=True, slots=True)
class Notify:
    """One-way push to a listener: ``record`` is the version of its key just stored here."""

    record: Record
    type = MsgType.NOTIFY


Request = (
    Ping | FindNode | FindValue | Store | HasValue | Announce | GetPeers | FindNodeStore | Put
    | Listen
)  # fmt: skip
Response = (
    Pong | Nodes | Value | StoreAck | HasValueAck | AnnounceAck | Peers | NodesAck | PutAck
    | RecordValue | Refused | ListenAck
)  # fmt: skip
Message = Hello | Request | Response | Signal | Notify | Bye
REQUEST_CLASSES: frozenset[type] = frozenset(get_args(Request))
RESPONSE_CLASSES: frozenset[type] = frozenset(get_args(Response))
"""For dispatch on ``type(msg)``: a set lookup, where ``isinstance`` on a union walks it."""

_R = MsgType.REFUSED  # any request may be refused (rate limit)
RESPONSE_TYPES: dict[MsgType, tuple[MsgType, ...]] = {
    MsgType.PING: (MsgType.PONG, _R),
    MsgType.FIND_NODE: (MsgType.NODES, _R),
    MsgType.FIND_VALUE: (MsgType.VALUE, MsgType.NODES, MsgType.RECORD, _R),
    MsgType.STORE: (MsgType.STORE_ACK, _R),
    MsgType.HAS_VALUE: (MsgType.HAS_VALUE_ACK, _R),
    MsgType.ANNOUNCE: (MsgType.ANNOUNCE_ACK, _R),
    MsgType.GET_PEERS: (MsgType.PEERS, _R),
    MsgType.PUT: (MsgType.PUT_ACK, _R),
    MsgType.FIND_NODE_STORE: (MsgType.NODES_ACK, _R),
    MsgType.LISTEN: (MsgType.LISTEN_ACK, _R),
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for ``peer``; ``via`` names the peer that introduced an unconnected contact
    (a relay for connection setup)."""

    peer: NodeId
    message: Message
    via: NodeId | None = None
