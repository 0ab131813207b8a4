"""Wire messages of the DHT protocol (DESIGN §5). Frozen, slotted dataclasses; no behaviour.

Every request carries a 64-bit request id ``rid``; its response echoes it. A response is accepted
only from the peer the request went to and only with one of the expected types
(``RESPONSE_TYPES``). ``Signal`` and ``Hello`` are not request/response and carry no rid.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a link: binds the sender's key to this connection (``cid``) and receiver."""

    public_key: bytes
    receiver: NodeId
    cid: str
    sig: bytes
    type = MsgType.HELLO


@dataclass(frozen=True, slots=True)
class Ping:
    rid: int
    type = MsgType.PING


@dataclass(frozen=True, slots=True)
class Pong:
    rid: int
    type = MsgType.PONG


@dataclass(frozen=True, slots=True)
class FindNode:
    rid: int
    target: NodeId
    type = MsgType.FIND_NODE


@dataclass(frozen=True, slots=True)
class Nodes:
    rid: int
    nodes: tuple[NodeId, ...]
    type = MsgType.NODES


@dataclass(frozen=True, slots=True)
class FindValue:
    rid: int
    key: bytes
    type = MsgType.FIND_VALUE


@dataclass(frozen=True, slots=True)
class Value:
    rid: int
    record: Record
    nodes: tuple[NodeId, ...]
    type = MsgType.VALUE


@dataclass(frozen=True, slots=True)
class Store:
    rid: int
    record: Record
    cached: bool
    type = MsgType.STORE


@dataclass(frozen=True, slots=True)
class StoreAck:
    rid: int
    ok: bool
    reason: str
    type = MsgType.STORE_ACK


@dataclass(frozen=True, slots=True)
class HasValue:
    rid: int
    key: bytes
    ts: int
    pub: NodeId
    type = MsgType.HAS_VALUE


@dataclass(frozen=True, slots=True)
class HasValueAck:
    """``has`` = the receiver holds this record or a better one."""

    rid: int
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
class Announce:
    rid: int
    provider: ProviderRecord
    type = MsgType.ANNOUNCE


@dataclass(frozen=True, slots=True)
class AnnounceAck:
    rid: int
    ok: bool
    reason: str
    type = MsgType.ANNOUNCE_ACK


@dataclass(frozen=True, slots=True)
class GetPeers:
    rid: int
    topic: bytes
    type = MsgType.GET_PEERS


@dataclass(frozen=True, slots=True)
class Peers:
    rid: int
    providers: tuple[ProviderRecord, ...]
    nodes: tuple[NodeId, ...]
    type = MsgType.PEERS


Request = Ping | FindNode | FindValue | Store | HasValue | Announce | GetPeers
Response = Pong | Nodes | Value | StoreAck | HasValueAck | AnnounceAck | Peers
Message = Hello | Request | Response | Signal

RESPONSE_TYPES: dict[MsgType, tuple[MsgType, ...]] = {
    MsgType.PING: (MsgType.PONG,),
    MsgType.FIND_NODE: (MsgType.NODES,),
    MsgType.FIND_VALUE: (MsgType.VALUE, MsgType.NODES),
    MsgType.STORE: (MsgType.STORE_ACK,),
    MsgType.HAS_VALUE: (MsgType.HAS_VALUE_ACK,),
    MsgType.ANNOUNCE: (MsgType.ANNOUNCE_ACK,),
    MsgType.GET_PEERS: (MsgType.PEERS,),
}
