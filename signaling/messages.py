"""The signaling protocol's frames: constants, typed messages, strict parsing and encoding.

Rules of this module:
- Every frame is one JSON object in one WebSocket text frame (docs/interfaces.md, "Signaling
  server protocol"). Field names on the wire are fixed here and nowhere else.
- Parsing is strict and total: ``parse_client_message`` / ``parse_server_message`` either return a
  frozen dataclass whose fields are already validated (IDs are 32 bytes, hex decoded, lengths
  checked) or raise ``FrameError`` carrying the error code to send back. They never raise anything
  else, whatever the input.
- Encoding is deterministic (``encode``): compact JSON, ASCII only.

Extension beyond the interface text (compatible, documented in the package report): error frames
echo the request's ``cid`` when it had one, so a client can tell which relay failed
(``unknown_target``), just as ``rid`` is echoed for requests that carry one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from node.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from node.ids import ID_BYTES, NodeId, id_hex

MAX_FRAME_BYTES: Final = 64 * 1024
"""Largest frame (UTF-8 bytes) the router accepts; larger ones get ``too_large``."""
RATE_LIMIT_FRAMES_PER_S: Final = 50.0
RATE_LIMIT_BURST_FRAMES: Final = 100
NONCE_BYTES: Final = 32
MAX_CID_CHARS: Final = 64
DEFAULT_PEERS_N: Final = 20
MIN_PEERS_N: Final = 1
MAX_PEERS_N: Final = 64


class MessageType(StrEnum):
    CHALLENGE = "challenge"
    REGISTER = "register"
    REGISTERED = "registered"
    PEERS = "peers"
    OFFER = "offer"
    ANSWER = "answer"
    ERROR = "error"


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    BAD_REQUEST = "bad_request"
    NOT_REGISTERED = "not_registered"
    UNKNOWN_TARGET = "unknown_target"
    RATE_LIMITED = "rate_limited"
    BAD_SIGNATURE = "bad_signature"
    SPOOFED_FROM = "spoofed_from"
    ALREADY_REGISTERED = "already_registered"


class RelayKind(StrEnum):
    OFFER = "offer"
    ANSWER = "answer"


class _Missing:
    """Marks an absent ``rid`` (``None`` is a legal rid: JSON ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

# A request id is any JSON value, echoed verbatim; ``MISSING`` when the request had none.
Rid = object


# ---------------------------------------------------------------------------------------------
# Client → server
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    node_id: NodeId
    public_key: bytes
    sig: bytes
    rid: Rid = MISSING


@dataclass(frozen=True, slots=True)
class PeersRequest:
    n: int
    """Already clamped to ``MIN_PEERS_N..MAX_PEERS_N``."""
    rid: Rid = MISSING


@dataclass(frozen=True, slots=True)
class Relay:
    """An offer or answer. ``sender`` is ``None`` client → server and set by the server."""

    kind: RelayKind
    to: NodeId
    cid: str
    sdp: str
    sender: NodeId | None = None
    rid: Rid = MISSING


ClientMessage = Register | PeersRequest | Relay

# ---------------------------------------------------------------------------------------------
# Server → client
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Registered:
    node_id: NodeId
    rid: Rid = MISSING


@dataclass(frozen=True, slots=True)
class PeersReply:
    peers: tuple[NodeId, ...]
    rid: Rid = MISSING


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    code: str
    """An ``ErrorCode`` value when it comes from our server; kept as text so a newer server's
    codes still parse on an older client."""
    message: str
    rid: Rid = MISSING
    cid: str | None = None


ServerMessage = Challenge | Registered | PeersReply | Relay | ErrorFrame


class FrameError(Exception):
    """A received frame breaks the protocol; ``code`` is what to answer with."""

    def __init__(self, code: ErrorCode, message: str, rid: Rid = MISSING, cid: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid
        self.cid = cid

    def to_frame(self) -> ErrorFrame:
        return ErrorFrame(self.code.value, self.message, self.rid, self.cid)


# ---------------------------------------------------------------------------------------------
# Decoding helpers
# ---------------------------------------------------------------------------------------------


def decode_json_object(data: str | bytes) -> dict[str, Any]:
    """The JSON object in a text frame. Binary or non-JSON → ``bad_json``; JSON that is not an
    object → ``bad_request``."""
    if not isinstance(data, str):
        raise FrameError(ErrorCode.BAD_JSON, "binary frames are not accepted; send JSON text")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FrameError(ErrorCode.BAD_JSON, f"frame is not valid JSON: {_short(exc)}") from None
    if not isinstance(obj, dict):
        raise FrameError(ErrorCode.BAD_REQUEST, "a frame must be a JSON object")
    return obj


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]


def _field(obj: dict[str, Any], name: str, kind: type, rid: Rid, cid: str | None = None) -> Any:
    if name not in obj:
        raise FrameError(ErrorCode.BAD_REQUEST, f"missing field {name!r}", rid, cid)
    value = obj[name]
    # bool is an int in Python; JSON true is never a valid number here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FrameError(ErrorCode.BAD_REQUEST, f"field {name!r} must be {kind.__name__}", rid, cid)
    return value


def _hex_field(
    obj: dict[str, Any], name: str, size: int, rid: Rid, cid: str | None = None
) -> bytes:
    text = _field(obj, name, str, rid, cid)
    if len(text) != 2 * size:
        raise FrameError(
            ErrorCode.BAD_REQUEST, f"field {name!r} must be {2 * size} hex digits", rid, cid
        )
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise FrameError(ErrorCode.BAD_REQUEST, f"field {name!r} is not hex", rid, cid) from None


def _type_of(obj: dict[str, Any], rid: Rid) -> str:
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise FrameError(ErrorCode.BAD_REQUEST, "field 'type' must be a string", rid)
    return kind


def parse_client_message(obj: dict[str, Any]) -> ClientMessage:
    """Validate a client frame. Raises ``FrameError`` (never anything else)."""
    rid: Rid = obj.get("rid", MISSING)
    kind = _type_of(obj, rid)
    if kind == MessageType.REGISTER:
        return Register(
            node_id=NodeId(_hex_field(obj, "id", ID_BYTES, rid)),
            public_key=_hex_field(obj, "public_key", PUBLIC_KEY_BYTES, rid),
            sig=_hex_field(obj, "sig", SIGNATURE_BYTES, rid),
            rid=rid,
        )
    if kind == MessageType.PEERS:
        n = obj.get("n", DEFAULT_PEERS_N)
        if not isinstance(n, int) or isinstance(n, bool):
            raise FrameError(ErrorCode.BAD_REQUEST, "field 'n' must be an integer", rid)
        return PeersRequest(n=max(MIN_PEERS_N, min(MAX_PEERS_N, n)), rid=rid)
    if kind in (MessageType.OFFER, MessageType.ANSWER):
        return _parse_relay(obj, RelayKind(kind), rid, from_server=False)
    if kind in {t.value for t in MessageType}:
        raise FrameError(ErrorCode.UNKNOWN_TYPE, f"clients do not send {kind!r} frames", rid)
    raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind[:64]!r}", rid)


def _parse_relay(obj: dict[str, Any], kind: RelayKind, rid: Rid, *, from_server: bool) -> Relay:
    raw_cid = obj.get("cid")
    cid = raw_cid if isinstance(raw_cid, str) and len(raw_cid) <= MAX_CID_CHARS else None
    to = NodeId(_hex_field(obj, "to", ID_BYTES, rid, cid))
    cid_text = _field(obj, "cid", str, rid, cid)
    if len(cid_text) > MAX_CID_CHARS:
        raise FrameError(
            ErrorCode.BAD_REQUEST, f"field 'cid' is longer than {MAX_CID_CHARS} characters", rid
        )
    sdp = _field(obj, "sdp", str, rid, cid)
    sender: NodeId | None = None
    if from_server:
        sender = NodeId(_hex_field(obj, "from", ID_BYTES, rid, cid))
    elif "from" in obj:
        raise FrameError(
            ErrorCode.SPOOFED_FROM, "'from' is set by the server, do not send it", rid, cid
        )
    return Relay(kind=kind, to=to, cid=cid_text, sdp=sdp, sender=sender, rid=rid)


def parse_server_message(obj: dict[str, Any]) -> ServerMessage:
    """Validate a server frame (client side). Raises ``FrameError`` (never anything else)."""
    rid: Rid = obj.get("rid", MISSING)
    kind = _type_of(obj, rid)
    if kind == MessageType.CHALLENGE:
        return Challenge(nonce=_hex_field(obj, "nonce", NONCE_BYTES, rid))
    if kind == MessageType.REGISTERED:
        return Registered(node_id=NodeId(_hex_field(obj, "id", ID_BYTES, rid)), rid=rid)
    if kind == MessageType.PEERS:
        raw = _field(obj, "peers", list, rid)
        peers: list[NodeId] = []
        for item in raw:
            if not isinstance(item, str) or len(item) != 2 * ID_BYTES:
                raise FrameError(ErrorCode.BAD_REQUEST, "'peers' must hold hex node ids", rid)
            try:
                peers.append(NodeId(bytes.fromhex(item)))
            except ValueError:
                raise FrameError(ErrorCode.BAD_REQUEST, "'peers' holds non-hex ids", rid) from None
        return PeersReply(peers=tuple(peers), rid=rid)
    if kind in (MessageType.OFFER, MessageType.ANSWER):
        return _parse_relay(obj, RelayKind(kind), rid, from_server=True)
    if kind == MessageType.ERROR:
        code = _field(obj, "code", str, rid)
        message = obj.get("message")
        cid = obj.get("cid")
        return ErrorFrame(
            code=code,
            message=message if isinstance(message, str) else "",
            rid=rid,
            cid=cid if isinstance(cid, str) else None,
        )
    raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind[:64]!r}", rid)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def _with_rid(obj: dict[str, Any], rid: Rid) -> dict[str, Any]:
    if rid is not MISSING:
        obj["rid"] = rid
    return obj


def to_wire(msg: ClientMessage | ServerMessage) -> dict[str, Any]:
    """The JSON object for ``msg``."""
    match msg:
        case Challenge(nonce=nonce):
            return {"type": MessageType.CHALLENGE.value, "nonce": nonce.hex()}
        case Register(node_id=node_id, public_key=public_key, sig=sig, rid=rid):
            obj: dict[str, Any] = {
                "type": MessageType.REGISTER.value,
                "id": id_hex(node_id),
                "public_key": public_key.hex(),
                "sig": sig.hex(),
            }
            return _with_rid(obj, rid)
        case Registered(node_id=node_id, rid=rid):
            return _with_rid({"type": MessageType.REGISTERED.value, "id": id_hex(node_id)}, rid)
        case PeersRequest(n=n, rid=rid):
            return _with_rid({"type": MessageType.PEERS.value, "n": n}, rid)
        case PeersReply(peers=peers, rid=rid):
            obj = {"type": MessageType.PEERS.value, "peers": [id_hex(p) for p in peers]}
            return _with_rid(obj, rid)
        case Relay(kind=kind, to=to, cid=cid, sdp=sdp, sender=sender, rid=rid):
            obj = {"type": kind.value, "to": id_hex(to), "cid": cid, "sdp": sdp}
            if sender is not None:
                obj["from"] = id_hex(sender)
            return _with_rid(obj, rid)
        case ErrorFrame(code=code, message=message, rid=rid, cid=cid):
            obj = {"type": MessageType.ERROR.value, "code": code, "message": message}
            if cid is not None:
                obj["cid"] = cid
            return _with_rid(obj, rid)
    raise TypeError(f"not a signaling message: {msg!r}")  # pragma: no cover


def encode(msg: ClientMessage | ServerMessage) -> str:
    """Compact, ASCII-only JSON text for one frame."""
    return json.dumps(to_wire(msg), separators=(",", ":"), ensure_ascii=True)
