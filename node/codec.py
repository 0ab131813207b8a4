"""Strict msgpack codec for wire messages.

Encoding: one msgpack array per message, ``[type, fields...]``. Decoding validates the type tag,
the arity, every field's type and every length before building a message; anything else raises
``DecodeError`` (never another exception), which the protocol counts against the sender.
HELLO is the one message that may carry more fields than it defines (a later minor version may
append some; they are ignored), so that a peer of another version is still understood well
enough to be refused with a reason. Open records travel as ``[key, data, ts, public_key, sig]``
(in STORE, FIND_NODE_STORE and VALUE); typed records (PUT, RECORD) as
``[kind, key, data, ts, seq, salt, public_key, sig]``; provider records as
``[topic, ts, port, leave, meta, public_key, sig]``; node ids as 32-byte bins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from node.config import MAX_MESSAGE_BYTES, MAX_PROVIDER_META_BYTES, MAX_RECORD_DATA_BYTES
from node.errors import LocalError, RemoteError
from node.ids import ID_BYTES, NodeId
from node.messages import (
    MAX_VERSION_PART,
    Announce,
    AnnounceAck,
    Bye,
    FindNode,
    FindNodeStore,
    FindValue,
    GetPeers,
    HasValue,
    HasValueAck,
    Hello,
    Listen,
    ListenAck,
    Message,
    MsgType,
    Nodes,
    NodesAck,
    Notify,
    Peers,
    Ping,
    Pong,
    Put,
    PutAck,
    RecordValue,
    Refused,
    Signal,
    Store,
    StoreAck,
    Value,
    WriteAck,
)
from node.records import MAX_SALT_BYTES, ProviderRecord, Record, RecordKind

MAX_NODES_PER_MESSAGE = 64
MAX_PROVIDERS_PER_MESSAGE = 64
MAX_REASON_CHARS = 200
MAX_CID_CHARS = 64
MAX_SIGNAL_PAYLOAD_BYTES = 32 * 1024
_U64 = (1 << 64) - 1
MAX_LISTEN_TTL_S = 3600


class DecodeError(RemoteError, ValueError):
    """A message that is not valid on the wire (the remote peer broke the protocol)."""


class EncodeError(LocalError, ValueError):
    """A message that this node must not send (a local bug or an oversize payload)."""


# -- encoding ----------------------------------------------------------------------------------


def _rec(r: Record) -> list[Any]:
    return [r.key, r.data, r.ts, r.public_key, r.sig]


def _trec(r: Record) -> list[Any]:
    return [int(r.kind), r.key, r.data, r.ts, r.seq, r.salt, r.public_key, r.sig]


def encode_record(r: Record) -> bytes:
    """One record of any kind as bytes (for storage layers; ``decode_record`` reverses it)."""
    data: bytes = msgpack.packb(_trec(r), use_bin_type=True)
    return data


def _prov(p: ProviderRecord) -> list[Any]:
    return [p.topic, p.ts, p.port, p.leave, p.meta, p.public_key, p.sig]


def _fields(m: Message) -> list[Any]:
    match m:
        case Hello():
            return [m.public_key, m.receiver, m.cid, m.sig, list(m.version)]
        case Ping() | Pong():
            return [m.rid]
        case FindNode():
            return [m.rid, m.target]
        case Nodes():
            return [m.rid, list(m.nodes)]
        case FindValue():
            return [m.rid, m.key]
        case Value():
            return [m.rid, _rec(m.record), list(m.nodes)]
        case Store():
            return [m.rid, _rec(m.record), m.cached]
        case FindNodeStore():
            return [m.rid, m.target, _rec(m.record)]
        case NodesAck():
            return [m.rid, list(m.nodes), m.ok, m.reason[:MAX_REASON_CHARS]]
        case PutAck():
            return [m.rid, m.ok, m.reason[:MAX_REASON_CHARS], m.seq]
        case WriteAck():
            return [m.rid, m.ok, m.reason[:MAX_REASON_CHARS]]
        case HasValue():
            return [m.rid, m.key, m.ts, m.pub]
        case HasValueAck():
            return [m.rid, m.has]
        case Signal():
            return [m.sid, m.source, m.target, m.hops_left, m.payload]
        case Announce():
            return [m.rid, _prov(m.provider)]
        case GetPeers():
            return [m.rid, m.topic]
        case Peers():
            return [m.rid, [_prov(p) for p in m.providers], list(m.nodes)]
        case Put():
            return [m.rid, _trec(m.record), m.cas, m.cached]
        case RecordValue():
            return [m.rid, _trec(m.record), list(m.nodes)]
        case Refused():
            return [m.rid, m.reason[:MAX_REASON_CHARS]]
        case Listen():
            return [m.rid, m.key, m.ttl_s]
        case ListenAck():
            return [m.rid, m.ok, m.ttl_s]
        case Notify():
            return [_rec(m.record)]
        case Bye():
            return []
    raise EncodeError(f"not a message: {type(m).__name__}")


def encode(m: Message) -> bytes:
    if not isinstance(m, Message):
        raise EncodeError(f"not a message: {type(m).__name__}")
    data: bytes = msgpack.packb([int(m.type), *_fields(m)], use_bin_type=True)
    if len(data) > MAX_MESSAGE_BYTES:
        raise EncodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return data


# -- decoding ----------------------------------------------------------------------------------


def _u64(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= _U64:
        raise DecodeError(f"{what}: expected an unsigned 64-bit integer")
    return v


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise DecodeError(f"{what}: expected an integer in [{lo}, {hi}]")
    return v


def _bool(v: Any, what: str) -> bool:
    if type(v) is not bool:
        raise DecodeError(f"{what}: expected a boolean")
    return v


def _bin(v: Any, what: str, max_len: int, exact: bool = False) -> bytes:
    if type(v) is not bytes or len(v) > max_len or (exact and len(v) != max_len):
        raise DecodeError(f"{what}: expected {'exactly' if exact else 'at most'} {max_len} bytes")
    return v


def _str(v: Any, what: str, max_len: int) -> str:
    if type(v) is not str or len(v) > max_len:
        raise DecodeError(f"{what}: expected a string of at most {max_len} characters")
    return v


def _version(v: Any) -> tuple[int, int]:
    if type(v) is not list or len(v) != 2:
        raise DecodeError("hello version: expected [major, minor]")
    return (
        _int(v[0], "hello version major", 0, MAX_VERSION_PART),
        _int(v[1], "hello version minor", 0, MAX_VERSION_PART),
    )


def _id(v: Any, what: str = "node id") -> NodeId:
    return NodeId(_bin(v, what, ID_BYTES, exact=True))


def _ids(v: Any) -> tuple[NodeId, ...]:
    if type(v) is not list or len(v) > MAX_NODES_PER_MESSAGE:
        raise DecodeError(f"nodes: expected a list of at most {MAX_NODES_PER_MESSAGE} ids")
    return tuple(_id(x) for x in v)


def _record(v: Any) -> Record:
    if type(v) is not list or len(v) != 5:
        raise DecodeError("record: expected [key, data, ts, public_key, sig]")
    return Record(
        key=_bin(v[0], "record key", ID_BYTES, exact=True),
        data=_bin(v[1], "record data", MAX_RECORD_DATA_BYTES),
        ts=_u64(v[2], "record ts"),
        public_key=_bin(v[3], "record public key", 32, exact=True),
        sig=_bin(v[4], "record sig", 64, exact=True),
    )


def _typed_record(v: Any) -> Record:
    if type(v) is not list or len(v) != 8:
        raise DecodeError("record: expected [kind, key, data, ts, seq, salt, public_key, sig]")
    kind = _int(v[0], "record kind", 0, max(RecordKind))
    return Record(
        key=_bin(v[1], "record key", ID_BYTES, exact=True),
        data=_bin(v[2], "record data", MAX_RECORD_DATA_BYTES),
        ts=_u64(v[3], "record ts"),
        public_key=_bin(v[6], "record public key", 32),
        sig=_bin(v[7], "record sig", 64),
        kind=RecordKind(kind),
        seq=_u64(v[4], "record seq"),
        salt=_bin(v[5], "record salt", MAX_SALT_BYTES),
    )


def decode_record(data: bytes) -> Record:
    """The record ``encode_record`` wrote, or ``DecodeError``."""
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True, max_map_len=0, max_ext_len=0)
    except Exception as exc:  # msgpack raises many unrelated types for bad input
        raise DecodeError(f"not msgpack: {type(exc).__name__}") from exc
    return _typed_record(obj)


def _opt_u64(v: Any, what: str) -> int | None:
    return None if v is None else _u64(v, what)


def _provider(v: Any) -> ProviderRecord:
    if type(v) is not list or len(v) != 7:
        raise DecodeError("provider: expected [topic, ts, port, leave, meta, public_key, sig]")
    return ProviderRecord(
        topic=_bin(v[0], "provider topic", ID_BYTES, exact=True),
        ts=_u64(v[1], "provider ts"),
        port=_int(v[2], "provider port", 0, 65535),
        leave=_bool(v[3], "provider leave"),
        meta=_bin(v[4], "provider meta", MAX_PROVIDER_META_BYTES),
        public_key=_bin(v[5], "provider public key", 32, exact=True),
        sig=_bin(v[6], "provider sig", 64, exact=True),
    )


def _providers(v: Any) -> tuple[ProviderRecord, ...]:
    if type(v) is not list or len(v) > MAX_PROVIDERS_PER_MESSAGE:
        raise DecodeError("providers: expected a list")
    return tuple(_provider(x) for x in v)


_Decoder = Callable[[list[Any]], Message]

HELLO_FIELDS = 5
MAX_HELLO_FIELDS = 16
"""Fields a HELLO may carry: 5 defined, the rest reserved for later minor versions (ignored)."""

_DECODERS: dict[int, tuple[int, _Decoder]] = {
    MsgType.HELLO: (
        HELLO_FIELDS,
        lambda f: Hello(
            _bin(f[0], "hello public key", 32, exact=True),
            _id(f[1], "hello receiver"),
            _str(f[2], "hello cid", MAX_CID_CHARS),
            _bin(f[3], "hello sig", 64, exact=True),
            _version(f[4]),
        ),
    ),
    MsgType.PING: (1, lambda f: Ping(_u64(f[0], "rid"))),
    MsgType.PONG: (1, lambda f: Pong(_u64(f[0], "rid"))),
    MsgType.FIND_NODE: (2, lambda f: FindNode(_u64(f[0], "rid"), _id(f[1], "target"))),
    MsgType.NODES: (2, lambda f: Nodes(_u64(f[0], "rid"), _ids(f[1]))),
    MsgType.FIND_VALUE: (
        2,
        lambda f: FindValue(_u64(f[0], "rid"), _bin(f[1], "key", ID_BYTES, exact=True)),
    ),
    MsgType.VALUE: (3, lambda f: Value(_u64(f[0], "rid"), _record(f[1]), _ids(f[2]))),
    MsgType.STORE: (3, lambda f: Store(_u64(f[0], "rid"), _record(f[1]), _bool(f[2], "cached"))),
    MsgType.STORE_ACK: (
        3,
        lambda f: StoreAck(
            _u64(f[0], "rid"), _bool(f[1], "ok"), _str(f[2], "reason", MAX_REASON_CHARS)
        ),
    ),
    MsgType.HAS_VALUE: (
        4,
        lambda f: HasValue(
            _u64(f[0], "rid"),
            _bin(f[1], "key", ID_BYTES, exact=True),
            _u64(f[2], "ts"),
            _id(f[3], "pub"),
        ),
    ),
    MsgType.HAS_VALUE_ACK: (2, lambda f: HasValueAck(_u64(f[0], "rid"), _bool(f[1], "has"))),
    MsgType.SIGNAL: (
        5,
        lambda f: Signal(
            _u64(f[0], "sid"),
            _id(f[1], "signal source"),
            _id(f[2], "signal target"),
            _int(f[3], "hops left", 0, 64),
            _bin(f[4], "signal payload", MAX_SIGNAL_PAYLOAD_BYTES),
        ),
    ),
    MsgType.ANNOUNCE: (2, lambda f: Announce(_u64(f[0], "rid"), _provider(f[1]))),
    MsgType.ANNOUNCE_ACK: (
        3,
        lambda f: AnnounceAck(
            _u64(f[0], "rid"), _bool(f[1], "ok"), _str(f[2], "reason", MAX_REASON_CHARS)
        ),
    ),
    MsgType.GET_PEERS: (
        2,
        lambda f: GetPeers(_u64(f[0], "rid"), _bin(f[1], "topic", ID_BYTES, exact=True)),
    ),
    MsgType.PEERS: (3, lambda f: Peers(_u64(f[0], "rid"), _providers(f[1]), _ids(f[2]))),
    MsgType.FIND_NODE_STORE: (
        3,
        lambda f: FindNodeStore(_u64(f[0], "rid"), _id(f[1], "target"), _record(f[2])),
    ),
    MsgType.NODES_ACK: (
        4,
        lambda f: NodesAck(
            _u64(f[0], "rid"),
            _bool(f[2], "ok"),
            _str(f[3], "reason", MAX_REASON_CHARS),
            _ids(f[1]),
        ),
    ),
    MsgType.PUT: (
        4,
        lambda f: Put(
            _u64(f[0], "rid"), _typed_record(f[1]), _opt_u64(f[2], "cas"), _bool(f[3], "cached")
        ),
    ),
    MsgType.PUT_ACK: (
        4,
        lambda f: PutAck(
            _u64(f[0], "rid"),
            _bool(f[1], "ok"),
            _str(f[2], "reason", MAX_REASON_CHARS),
            _u64(f[3], "seq"),
        ),
    ),
    MsgType.RECORD: (
        3,
        lambda f: RecordValue(_u64(f[0], "rid"), _typed_record(f[1]), _ids(f[2])),
    ),
    MsgType.REFUSED: (
        2,
        lambda f: Refused(_u64(f[0], "rid"), _str(f[1], "reason", MAX_REASON_CHARS)),
    ),
    MsgType.LISTEN: (
        3,
        lambda f: Listen(
            _u64(f[0], "rid"),
            _bin(f[1], "key", ID_BYTES, exact=True),
            _int(f[2], "ttl_s", 0, MAX_LISTEN_TTL_S),
        ),
    ),
    MsgType.LISTEN_ACK: (
        3,
        lambda f: ListenAck(
            _u64(f[0], "rid"), _bool(f[1], "ok"), _int(f[2], "ttl_s", 0, MAX_LISTEN_TTL_S)
        ),
    ),
    MsgType.NOTIFY: (1, lambda f: Notify(_record(f[0]))),
    MsgType.BYE: (0, lambda f: Bye()),
}


def decode(data: bytes) -> Message:
    """Decode one wire message or raise ``DecodeError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected binary data")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=MAX_MESSAGE_BYTES,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_array_len=4 * MAX_NODES_PER_MESSAGE,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many unrelated types for bad input
        raise DecodeError(f"not msgpack: {type(exc).__name__}") from exc
    if type(obj) is not list or not obj:
        raise DecodeError("expected a non-empty array")
    tag = obj[0]
    if type(tag) is not int or tag not in _DECODERS:
        raise DecodeError(f"unknown message type {tag!r}")
    arity, build = _DECODERS[tag]
    fields = obj[1:]
    if tag == MsgType.HELLO and arity < len(fields) <= MAX_HELLO_FIELDS:
        fields = fields[:arity]  # fields of a later minor version
    if len(fields) != arity:
        raise DecodeError(f"{MsgType(tag).name}: expected {arity} fields, got {len(fields)}")
    return build(fields)
