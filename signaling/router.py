"""The signaling router: a sans-IO state machine for every connection of the server.

Theory of operation
-------------------
The I/O layer (``signaling.server``) owns sockets; this router owns all protocol state. A
connection is an opaque ``int`` handle chosen by the I/O layer. Inputs carry ``now`` (monotonic
seconds); the only randomness (challenge nonces) comes from an injected ``random.Random``, so the
router runs identically in unit tests, under Hypothesis and behind real sockets.

Receiving data::

    connect(conn, now) -> [Outgoing]            # the challenge
    receive(conn, data, now) -> [Outgoing]      # replies, relays and error frames
    disconnect(conn) -> None                    # forget the connection (idempotent)

Outputs: each ``Outgoing`` is ``(conn, json_text)``; ``connections_to_close()`` swaps out the
connections the I/O layer must close after sending their queued frames (a registration that was
taken over). ``stats()`` is a snapshot of the counters.

Invariants
----------
- ``receive`` never raises and returns, for the sender, exactly one frame: a reply (``registered``,
  ``peers``) or one error frame. A successful relay returns no frame to the sender and exactly one
  frame to the target.
- Every error is a JSON error frame (codes in ``messages.ErrorCode``).
- An ID is held by at most one connection. Registering proves the key: the signature is over this
  connection's own random nonce, so a register frame captured from another connection is useless.
- Takeover policy: a *valid* registration of an ID that another live connection holds replaces the
  old connection (it is the owner reconnecting before the server noticed the old socket die). The
  old connection gets an ``already_registered`` error frame and is handed to
  ``connections_to_close()``. Without the key there is no valid registration, hence no takeover.
- A connection registers one ID for its lifetime: re-registering the same ID is idempotent,
  another ID is refused with ``already_registered``.
- Order of checks per frame: rate limit, size, binary/JSON, fields, then semantics.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Final, NamedTuple

from node.identity import DOMAIN_SIGNALING, verify
from node.ids import NodeId, short_id
from signaling.admission import Admission, AdmissionSettings, TokenBucket
from signaling.messages import (
    MAX_FRAME_BYTES,
    NONCE_BYTES,
    RATE_LIMIT_BURST_FRAMES,
    RATE_LIMIT_FRAMES_PER_S,
    Challenge,
    ClientMessage,
    ErrorCode,
    ErrorFrame,
    FrameError,
    PeersReply,
    PeersRequest,
    Register,
    Registered,
    Relay,
    RelayKind,
    ServerMessage,
    decode_json_object,
    encode,
    parse_client_message,
)

logger = logging.getLogger(__name__)

ConnId = int


class Outgoing(NamedTuple):
    conn: ConnId
    text: str


class ConnState(enum.Enum):
    CHALLENGED = "challenged"
    REGISTERED = "registered"


@dataclass(slots=True)
class _Conn:
    nonce: bytes
    bucket: TokenBucket
    state: ConnState = ConnState.CHALLENGED
    node_id: NodeId | None = None
    addr: str | None = None  # the source address (registration rate limit)


@dataclass(frozen=True, slots=True)
class RouterStats:
    connections: int
    registered: int
    frames_in: int
    frames_out: int
    relayed: int
    peers_requests: int
    takeovers: int
    errors: dict[str, int] = field(default_factory=dict)
    admission: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class SignalingRouter:
    """All state of the signaling server, without I/O. See the module docstring."""

    MAX_FRAME_BYTES: Final = MAX_FRAME_BYTES

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        rate_per_s: float = RATE_LIMIT_FRAMES_PER_S,
        burst: float = RATE_LIMIT_BURST_FRAMES,
        admission: AdmissionSettings | None = None,
    ) -> None:
        # The nonce must be unpredictable in production: default to the OS CSPRNG.
        self._rng: random.Random = rng if rng is not None else random.SystemRandom()
        self._max_frame_bytes = max_frame_bytes
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._conns: dict[ConnId, _Conn] = {}
        self._by_id: dict[NodeId, ConnId] = {}
        self._to_close: list[ConnId] = []
        self._frames_in = 0
        self._frames_out = 0
        self._relayed = 0
        self._peers_requests = 0
        self._takeovers = 0
        self._errors: Counter[str] = Counter()
        self.admission = Admission(admission or AdmissionSettings())

    # -- receiving data ----------------------------------------------------------------------

    def connect(self, conn: ConnId, now: float, addr: str | None = None) -> list[Outgoing]:
        """A new connection (from source address ``addr``): remember it, send its challenge."""
        if conn in self._conns:  # the I/O layer reused a live handle: start over cleanly
            self.disconnect(conn)
        nonce = self._rng.getrandbits(8 * NONCE_BYTES).to_bytes(NONCE_BYTES, "big")
        self._conns[conn] = _Conn(
            nonce=nonce, bucket=TokenBucket(self._rate_per_s, self._burst, now), addr=addr
        )
        return [self._out(conn, Challenge(nonce))]

    def receive(self, conn: ConnId, data: str | bytes, now: float) -> list[Outgoing]:
        """One frame from ``conn``. Never raises; see the module invariants."""
        state = self._conns.get(conn)
        if state is None:
            logger.debug("frame from unknown connection %s ignored", conn)
            return []
        self._frames_in += 1
        try:
            if not state.bucket.take(now):
                raise FrameError(
                    ErrorCode.RATE_LIMITED,
                    f"over {self._rate_per_s:g} frames/s (burst {self._burst:g}); frame dropped",
                )
            size = _frame_bytes(data)
            if size > self._max_frame_bytes:
                raise FrameError(
                    ErrorCode.TOO_LARGE,
                    f"frame of {size} bytes exceeds the {self._max_frame_bytes}-byte limit",
                )
            message = parse_client_message(decode_json_object(data))
            return self._handle(conn, state, message, now)
        except FrameError as exc:
            return [self._error(conn, exc.to_frame())]

    def disconnect(self, conn: ConnId) -> None:
        """Forget ``conn`` and release its ID. Idempotent."""
        state = self._conns.pop(conn, None)
        if (
            state is not None
            and state.node_id is not None
            and self._by_id.get(state.node_id) == conn
        ):
            del self._by_id[state.node_id]
            self.admission.gone(state.node_id)

    # -- outputs -----------------------------------------------------------------------------

    def connections_to_close(self) -> list[ConnId]:
        """Connections the I/O layer must close (after sending what was queued for them)."""
        out, self._to_close = self._to_close, []
        return out

    def stats(self) -> RouterStats:
        return RouterStats(
            connections=len(self._conns),
            registered=len(self._by_id),
            frames_in=self._frames_in,
            frames_out=self._frames_out,
            relayed=self._relayed,
            peers_requests=self._peers_requests,
            takeovers=self._takeovers,
            errors=dict(self._errors),
            admission=asdict(self.admission.stats),
        )

    def registered_ids(self) -> list[NodeId]:
        return list(self._by_id)

    def node_id_of(self, conn: ConnId) -> NodeId | None:
        state = self._conns.get(conn)
        return state.node_id if state is not None else None

    # -- handlers ----------------------------------------------------------------------------

    def _handle(
        self, conn: ConnId, state: _Conn, message: ClientMessage, now: float
    ) -> list[Outgoing]:
        match message:
            case Register():
                return self._register(conn, state, message, now)
            case PeersRequest():
                return self._peers(conn, state, message, now)
            case Relay():
                return self._relay(conn, state, message, now)
        raise AssertionError("unreachable")  # pragma: no cover

    def _register(self, conn: ConnId, state: _Conn, msg: Register, now: float) -> list[Outgoing]:
        if hashlib.sha256(msg.public_key).digest() != msg.node_id:
            raise FrameError(ErrorCode.BAD_SIGNATURE, "id is not SHA-256 of public_key", msg.rid)
        if not verify(msg.public_key, msg.sig, DOMAIN_SIGNALING + state.nonce):
            raise FrameError(
                ErrorCode.BAD_SIGNATURE,
                "sig is not a signature of this connection's nonce",
                msg.rid,
            )
        if state.node_id is not None and state.node_id != msg.node_id:
            raise FrameError(
                ErrorCode.ALREADY_REGISTERED,
                f"this connection is already registered as {state.node_id.hex()}",
                msg.rid,
            )
        if state.node_id is None and not self.admission.may_register(state.addr, now):
            # Closed after the error frame: the client reconnects (with its backoff) and gets
            # a fresh challenge, instead of idling until the register timeout.
            self._to_close.append(conn)
            frame = ErrorFrame(
                ErrorCode.RATE_LIMITED.value, "too many registrations; try again shortly", msg.rid
            )
            return [self._error(conn, frame)]
        out: list[Outgoing] = []
        holder = self._by_id.get(msg.node_id)
        if holder is not None and holder != conn:
            # The key holder proved ownership on a new connection: it replaces the old one.
            self._takeovers += 1
            logger.info("id %s re-registered; closing its older connection", short_id(msg.node_id))
            out.append(
                self._error(
                    holder,
                    ErrorFrame(
                        ErrorCode.ALREADY_REGISTERED.value,
                        "this id was registered again by a newer connection; closing this one",
                    ),
                )
            )
            old = self._conns.get(holder)
            if old is not None:
                old.node_id = None
                old.state = ConnState.CHALLENGED
            self._to_close.append(holder)
        state.node_id = msg.node_id
        state.state = ConnState.REGISTERED
        self._by_id[msg.node_id] = conn
        self.admission.registered(msg.node_id)
        out.append(self._out(conn, Registered(msg.node_id, msg.rid)))
        return out

    def _require_registered(self, state: _Conn, rid: object, cid: str | None = None) -> NodeId:
        if state.node_id is None:
            raise FrameError(ErrorCode.NOT_REGISTERED, "register first", rid, cid)
        return state.node_id

    def _peers(self, conn: ConnId, state: _Conn, msg: PeersRequest, now: float) -> list[Outgoing]:
        own = self._require_registered(state, msg.rid)
        self._peers_requests += 1
        picked = self.admission.pick(own, self._by_id, msg.n, now)
        return [self._out(conn, PeersReply(tuple(picked), msg.rid))]

    def _relay(self, conn: ConnId, state: _Conn, msg: Relay, now: float) -> list[Outgoing]:
        own = self._require_registered(state, msg.rid, msg.cid)
        target = self._by_id.get(msg.to)
        if target is None:
            raise FrameError(
                ErrorCode.UNKNOWN_TARGET,
                f"{msg.to.hex()} is not registered here",
                msg.rid,
                msg.cid,
            )
        self._relayed += 1
        if msg.kind is RelayKind.OFFER:
            self.admission.offer(msg.to, msg.cid, now)
        else:
            self.admission.answer(own, msg.cid, now)
        forwarded = Relay(kind=msg.kind, to=msg.to, cid=msg.cid, sdp=msg.sdp, sender=own)
        return [self._out(target, forwarded)]

    # -- helpers -----------------------------------------------------------------------------

    def _out(self, conn: ConnId, msg: ServerMessage) -> Outgoing:
        self._frames_out += 1
        return Outgoing(conn, encode(msg))

    def _error(self, conn: ConnId, frame: ErrorFrame) -> Outgoing:
        self._errors[frame.code] += 1
        return self._out(conn, frame)


def _frame_bytes(data: str | bytes) -> int:
    if isinstance(data, bytes | bytearray | memoryview):
        return len(data)
    # A str may hold lone surrogates (never from websockets, but the router accepts any str).
    return len(data.encode("utf-8", "surrogatepass"))
