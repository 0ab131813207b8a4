"""Wire messages of the DHT protocol (DESIGN §5). Frozen, slotted dataclasses; no behaviour.

Every request carries a 64-bit request id ``rid``; its response echoes it: both derive from
``Rpc``, which owns the ``rid``. A response is accepted only from the peer the request went to and
only with one of the expected types (``RESPONSE_TYPES``; ``node.requests`` does the matching).
``Signal`` and ``Hello`` are not request/response and carry no rid.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from node.ids import NodeId
from node.records import ProviderRecord, Record


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
    BYE = 20  # dens (20-23 reserved): the sender is leaving on purpose


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a link: binds the sender's key to this connection (``cid``) and receiver."""

    public_key: bytes
    receiver: NodeId
    cid: str
    sig: bytes
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


Request = Ping | FindNode | FindValue | Store | HasValue | Announce | GetPeers
Response = Pong | Nodes | Value | StoreAck | HasValueAck | AnnounceAck | Peers
Message = Hello | Request | Response | Signal | Bye

RESPONSE_TYPES: dict[MsgType, tuple[MsgType, ...]] = {
    MsgType.PING: (MsgType.PONG,),
    MsgType.FIND_NODE: (MsgType.NODES,),
    MsgType.FIND_VALUE: (MsgType.VALUE, MsgType.NODES),
    MsgType.STORE: (MsgType.STORE_ACK,),
    MsgType.HAS_VALUE: (MsgType.HAS_VALUE_ACK,),
    MsgType.ANNOUNCE: (MsgType.ANNOUNCE_ACK,),
    MsgType.GET_PEERS: (MsgType.PEERS,),
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for ``peer``; ``via`` names the peer that introduced an unconnected contact
    (a relay for connection setup)."""

    peer: NodeId
    message: Message
    via: NodeId | None = None
