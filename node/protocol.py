# Over 600 lines: the core's one state machine; every input and transition is dispatched here.
"""The DHT protocol engine: sans-IO Kademlia with signed records and topic discovery.

Theory of operation (the aioquic pattern):

- Inputs: ``receive(peer, data, now)`` for every message from an authenticated peer,
  ``peer_connected`` / ``peer_disconnected`` / ``peer_lost`` / ``add_contact`` for link changes,
  ``delivery_failed(peer, now)`` when the runtime could not reach a peer, ``handle_timer(now)`` when
  the deadline from ``get_timer()`` passes, and the commands (``get``, ``store``, ``find_node``,
  ``ping``, ``announce``, ``get_peers``, ``join_topic`` ...) which return an operation id.
- Outputs are pulled: ``messages_to_send()`` (``Outgoing(peer, message, via)``; ``via`` names the
  peer that introduced an unconnected contact, a relay for connection setup), ``next_event()``
  (``events.OpCompleted`` carries every operation's result) and ``get_timer()``.
- Nothing here reads a clock, draws global randomness or does I/O. ``now`` is monotonic seconds;
  wall-clock milliseconds for record timestamps are ``now + wall_offset_s``.

This class is the facade and the dispatcher; the parts are their own sans-IO modules:
``requests`` (request ids, correlation, deadlines), ``operations`` (typed operation state),
``maintenance`` (join, refresh, republish, repair), ``topics`` (joined topics) and ``relay``
(SIGNAL routing).

Invariants:
- A response is accepted only from the peer that was asked, with one of the expected types
  (``messages.RESPONSE_TYPES``), while the request is pending. Everything else is dropped and
  counted; a malformed message is also reported (``PeerMisbehaved``). No input raises.
- Contacts enter the routing table only when they themselves send a valid message; node IDs
  learned from responses are lookup candidates, never routing-table entries.
- Expired records are never served, repaired or republished (storage hides them at once).
- Maintenance never bursts: bucket refreshes run one lookup at a time, spaced out; repair walks
  its records in bounded batches.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import cast

from node import codec
from node.bans import BanList
from node.config import Config
from node.durability import Batch, Durability, Snapshot
from node.events import (
    ContactAdded,
    ContactRemoved,
    Event,
    FindNodeResult,
    GetPeersResult,
    OpCompleted,
    OpResult,
    PeerBanned,
    PeerLeft,
    PeerMisbehaved,
    PeerUnresponsive,
    PingResult,
    RecordExpired,
    RecordStored,
)
from node.identity import Identity
from node.ids import NodeId
from node.listening import Listening
from node.lookup import LookupIter
from node.maintenance import Maintenance
from node.messages import (
    REQUEST_CLASSES,
    RESPONSE_CLASSES,
    RESPONSE_TYPES,
    Bye,
    HasValue,
    HasValueAck,
    Listen,
    Message,
    MsgType,
    Notify,
    Outgoing,
    Ping,
    Refused,
    Request,
    Response,
    Signal,
    WriteAck,
)
from node.operations import (
    Answer,
    LookupOp,
    Op,
    OpKind,
    OpTable,
    PingOp,
    Purpose,
    WriteOp,
    record_request,
)
from node.owned import Draft, finalize, immutable_draft, mutable_draft, open_draft
from node.quotas import RATE_LIMITED, RateLimiter, StoreLimits, Verdict
from node.records import (
    ProviderRecord,
    Record,
    RecordKind,
    sign_provider,
)
from node.relay import Forward, SignalRelay
from node.requests import Pending, RequestTable, TimerKind, Timers
from node.responder import Responder
from node.routing import RemovalReason, RoutingTable
from node.storage import ProviderStore, PutResult, RecordStore
from node.topics import JoinedTopic, Topics

__all__ = ["DhtProtocol", "JoinedTopic", "Outgoing", "Stats"]

GET_GRACE_S = 0.05  # after the first value: how long in-flight answers may still improve it
STORE_GRACE_S = 0.25  # slack after the request timeout before a write gives up
LATENCY_SAMPLES = 1000
LOST_WRITE_REASONS = frozenset({"cas_mismatch", "seq_not_newer"})
_REQUEST_TIMER = TimerKind.REQUEST
_TYPE_NAME = {t: t.name for t in MsgType}  # ``MsgType.name`` is a property: look it up once
_REQUEST_TAGS = frozenset(int(t) for t in RESPONSE_TYPES)  # the request types (< 0x80)


def _looks_like_request(data: bytes | bytearray | memoryview) -> bool:
    """A cheap peek: a msgpack fixarray whose first element (the type) is a request type."""
    return len(data) > 1 and 0x91 <= data[0] <= 0x9F and data[1] in _REQUEST_TAGS


@dataclass(slots=True)
class Stats:
    messages_in: Counter[str] = field(default_factory=Counter)
    messages_out: Counter[str] = field(default_factory=Counter)
    dropped_malformed: int = 0
    dropped_unexpected: int = 0
    lookups: int = 0
    lookup_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    lookup_hops: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    requests_failed: int = 0
    records_rejected: int = 0
    rate_limited: int = 0  # requests refused with ``rate_limited``
    rate_dropped: int = 0  # requests dropped unanswered (a peer far over its rate)
    peers_banned: int = 0  # peers disconnected and refused for flooding
    refused_by_peers: int = 0  # our requests that peers refused (REFUSED)


class DhtProtocol:
    def __init__(
        self,
        identity: Identity,
        config: Config,
        rng: random.Random,
        now: float,
        wall_offset_s: float = 0.0,
    ) -> None:
        self.identity = identity
        self.id: NodeId = identity.node_id
        self.config = config
        self.rng = rng
        self.wall_offset_s = wall_offset_s
        self.started = now
        self.table = RoutingTable(self.id, config.k, now)
        limits = StoreLimits(
            config.max_store_bytes,
            config.max_publisher_bytes,
            config.max_publisher_records,
            config.max_peer_bytes,
            config.max_peer_records,
        )
        self.records = RecordStore(
            config.record_ttl_s, config.cache_ttl_s, config.max_records, limits
        )
        self.providers = ProviderStore(
            config.provider_ttl_s,
            config.max_providers_per_topic,
            max_per_announcer=config.max_topics_per_announcer,
        )
        self.limiter = RateLimiter(
            config.request_rate_per_peer,
            config.request_burst_per_peer,
            config.request_bytes_per_peer_s,
            config.request_bytes_burst_per_peer,
        )
        self.stats = Stats()
        self.connected: set[NodeId] = set()
        self.last_heard: dict[NodeId, float] = {}
        self.malformed_by_peer: Counter[NodeId] = Counter()
        self.banned = BanList()
        """Peers flooding far over their rate (``node.bans``): nothing they send is read."""

        self._out: list[Outgoing] = []
        self._events: deque[Event] = deque()
        self._timers = Timers()
        self._requests = RequestTable(rng, self._timers)
        self._ops = OpTable()
        self._pinging: set[NodeId] = set()
        # With transport liveness the link itself reports a dead peer (``peer_lost``).
        tick = math.inf if config.transport_liveness else config.liveness_tick_s
        self._next_liveness = now + tick
        self.relay = SignalRelay(self.id, config.signal_hop_limit, rng)
        self.maintenance = Maintenance(self.id, config, rng, self.table, self.records, self, now)
        self.topics = Topics(identity, config, self)
        self.responder = Responder(config, self.table, self.records, self.providers)
        self.durability: Durability | None = None
        self.listening = Listening(self.id, config, self, now)

    # == views ====================================================================================

    @property
    def peer_rtt(self) -> dict[NodeId, float]:
        """Smoothed request → response time per peer, seconds."""
        return self._requests.rtt

    @property
    def joined(self) -> dict[bytes, JoinedTopic]:
        return self.topics.joined

    @property
    def authored(self) -> dict[bytes, tuple[Record, float]]:
        """Records we wrote: key → (record, next republish time)."""
        return self.maintenance.authored

    def awaiting(self, peer: NodeId) -> bool:
        """Whether a request to ``peer`` is in flight."""
        return bool(self._requests.to_peer(peer))

    def pending_requests(self) -> int:
        return len(self._requests)

    def active_ops(self) -> int:
        return len(self._ops)

    def wall_ms(self, now: float) -> int:
        return int((now + self.wall_offset_s) * 1000)

    # == inputs: links ============================================================================

    def peer_connected(self, peer: NodeId, now: float) -> None:
        """An authenticated link to ``peer`` is open (its HELLO was verified)."""
        self.connected.add(peer)
        self._heard(peer, now)

    def peer_disconnected(self, peer: NodeId, now: float) -> None:
        self.connected.discard(peer)
        self._requests.rtt.pop(peer, None)
        # Requests to a peer whose link is gone cannot be answered: fail them now.
        self.delivery_failed(peer, now)

    def peer_lost(self, peer: NodeId, now: float) -> None:
        """The transport heard nothing from ``peer`` for its liveness deadline: it is gone."""
        if self.table.remove(peer):
            self._events.append(ContactRemoved(peer, RemovalReason.LIVENESS_LOST))
        self.peer_disconnected(peer, now)

    def add_contact(self, peer: NodeId, now: float) -> None:
        """A contact verified by other means (simulations, tests)."""
        self._heard(peer, now)

    def delivery_failed(self, peer: NodeId, now: float) -> None:
        """Messages to ``peer`` could not be delivered (dial failed, link closed)."""
        for rid in self._requests.to_peer(peer):
            self._fail_request(rid, now)

    # == inputs: messages =========================================================================

    def receive(self, peer: NodeId, data: bytes | Message, now: float) -> None:
        """Handle one message from ``peer``. Never raises for any ``data``."""
        verdict: Verdict | None = None
        if self.banned.active and self.banned.banned(peer, now):
            self.stats.rate_dropped += 1
            return
        if isinstance(data, bytes | bytearray | memoryview):
            if _looks_like_request(data):
                # Rate-check before decoding: a peer far over its rate costs no decode at all.
                verdict = self.limiter.check(peer, now, len(data))
                if verdict is Verdict.DROP or verdict is Verdict.BAN:
                    self._dropped(peer, verdict, now)
                    return
            try:
                msg = codec.decode(bytes(data))
            except codec.DecodeError as exc:
                self._malformed(peer, str(exc))
                return
        else:
            msg = data
        self.stats.messages_in[_TYPE_NAME[msg.type]] += 1
        cls = type(msg)
        if cls is Bye:
            self._left(peer, now)
            return
        self._heard(peer, now)
        if cls in REQUEST_CLASSES:
            if verdict is None:
                verdict = self.limiter.check(peer, now)
            if verdict is not Verdict.ALLOW:
                self._rate_limited(peer, cast(Request, msg), verdict, now)
                return
        if isinstance(msg, Listen):
            self._send(peer, self.listening.on_listen(peer, msg, now))
        elif cls in REQUEST_CLASSES:
            reply = self.responder.answer(peer, cast(Request, msg), now, self.wall_ms(now))
            if reply.rejected:
                self.stats.records_rejected += 1
            if reply.stored is not None:
                self._events.append(reply.stored)
                self.listening.stored(reply.stored.record, peer, now)
            d = self.durability
            if d is not None and isinstance(reply.response, WriteAck) and d.pending:
                d.hold(Outgoing(peer, reply.response, None))  # acknowledged once on disk
            else:
                self._send(peer, reply.response)
        elif cls in RESPONSE_CLASSES:
            self._on_response(peer, cast(Response, msg), now)
        elif isinstance(msg, Signal):
            self._on_signal(peer, msg)
        elif isinstance(msg, Notify):
            if not self.listening.on_notify(peer, msg.record, self.wall_ms(now)):
                self.stats.dropped_unexpected += 1
        else:
            self.stats.dropped_unexpected += 1  # a HELLO after the handshake

    def _rate_limited(self, peer: NodeId, msg: Request, verdict: Verdict, now: float) -> None:
        if verdict is Verdict.REFUSE:
            self.stats.rate_limited += 1
            self._send(peer, Refused(msg.rid, RATE_LIMITED))
        else:
            self._dropped(peer, verdict, now)

    def _dropped(self, peer: NodeId, verdict: Verdict, now: float) -> None:
        self.stats.rate_dropped += 1
        if verdict is not Verdict.BAN or self.config.ban_s <= 0:
            return
        # Far over its rate for too long: every request it sends still costs the transport, so
        # it goes — out of the table, its requests failed, its link closed by the runtime.
        self.stats.peers_banned += 1
        for_s, strikes = self.banned.strike(peer, now, self.config.ban_s)
        self.connected.discard(peer)
        self.last_heard.pop(peer, None)
        self.delivery_failed(peer, now)
        if self.table.remove(peer):
            self._events.append(ContactRemoved(peer, RemovalReason.BANNED))
        reason = f"far over its request rate for too long (ban {strikes})"
        self._events.append(PeerBanned(peer, reason, for_s))

    @property
    def refusals(self) -> Counter[str]:
        """Writes this node refused, by reason (``quota``, ``seq_not_newer``, ...)."""
        return self.responder.refusals

    def _left(self, peer: NodeId, now: float) -> None:
        """``peer`` said BYE: forget it now (its requests fail, its contact goes)."""
        self.connected.discard(peer)
        self.last_heard.pop(peer, None)
        self._requests.rtt.pop(peer, None)
        self.delivery_failed(peer, now)
        if self.table.remove(peer):
            self._events.append(ContactRemoved(peer, RemovalReason.LEFT))
        self._events.append(PeerLeft(peer))

    def leave(self) -> list[NodeId]:
        """We are leaving on purpose: say BYE to every connected peer (the caller closes the
        links once the messages are out). Returns the peers told."""
        told = sorted(self.connected)
        for peer in told:
            self._send(peer, Bye())
        return told

    def _malformed(self, peer: NodeId, reason: str) -> None:
        self.stats.dropped_malformed += 1
        self.malformed_by_peer[peer] += 1
        self._events.append(PeerMisbehaved(peer, reason, self.malformed_by_peer[peer]))

    def _heard(self, peer: NodeId, now: float) -> None:
        if peer == self.id or (self.banned.active and self.banned.banned(peer, now)):
            return
        self.last_heard[peer] = now
        table = self.table
        if table.contact(peer) is not None:
            table.update(peer, now)  # a known contact: nothing else can change
            return
        oldest = table.update(peer, now)
        if peer in table:
            self._events.append(ContactAdded(peer))
        if oldest is not None and oldest not in self._pinging:
            # A full bucket: the oldest contact must prove it is alive before a newcomer may
            # replace it — unless we heard from it recently (BEP 5's "good" node), in which case
            # the newcomer simply waits in the replacement cache.
            seen = self.last_heard.get(oldest)
            if seen is None or now - seen >= self.config.bucket_ping_after_s:
                self._ping(oldest, now, Purpose.BUCKET)

    # -- requests served (node.responder) and signals relayed (node.relay) ----------------------

    def _on_signal(self, peer: NodeId, msg: Signal) -> None:
        action = self.relay.receive(peer, msg, self.connected)
        if isinstance(action, Forward):
            self._send(action.peer, action.signal)
        elif action is not None:
            self._events.append(action)

    # -- responses --------------------------------------------------------------------------------

    def _on_response(self, peer: NodeId, msg: Response, now: float) -> None:
        p = self._requests.match(peer, msg, now)
        if p is None:
            self.stats.dropped_unexpected += 1
            return
        op = self._ops.get(p.op_id)
        if isinstance(msg, Refused):
            self.stats.refused_by_peers += 1
            if isinstance(op, LookupOp):  # the peer is alive, merely busy: not a failure
                op.it.on_failure(p.peer)
                self._step_lookup(op, now)
                return
        if op is None:
            if isinstance(msg, HasValueAck) and isinstance(p.request, HasValue):
                self.maintenance.repair_answered(p.peer, p.request, msg.has, now)
            elif isinstance(p.request, HasValue):
                self.maintenance.repair_failed(p.request, now)
            return
        if isinstance(op, LookupOp):
            self._lookup_response(op, peer, msg, now)
        elif isinstance(op, WriteOp):
            op.on_answer(msg)
            self._check_write(op, now)
        elif isinstance(op, PingOp):
            self._ping_done(op, True, now)

    def _fail_request(self, rid: int, now: float) -> None:
        p: Pending = self._requests.pop(rid)
        self.stats.requests_failed += 1
        op = self._ops.get(p.op_id)
        if op is None and isinstance(p.request, HasValue):
            self.maintenance.repair_failed(p.request, now)
        if isinstance(op, PingOp):
            self._ping_done(op, False, now)
            return
        if self.table.record_failure(p.peer, self.config.max_request_failures):
            self._events.append(ContactRemoved(p.peer, RemovalReason.UNRESPONSIVE))
        if isinstance(op, LookupOp):
            op.it.on_failure(p.peer)
            self._step_lookup(op, now)
        elif isinstance(op, WriteOp):
            op.on_failure()
            self._check_write(op, now)

    # == inputs: time =============================================================================

    def _timer_alive(self, kind: TimerKind, ref: int) -> bool:
        return ref in (self._requests if kind is _REQUEST_TIMER else self._ops)

    def get_timer(self) -> float | None:
        t = min(
            self._next_liveness,
            self.maintenance.next_deadline(),
            self.topics.next_deadline(),
            self.listening.next_deadline(),
        )
        first = self._timers.next_deadline(self._timer_alive)
        if first is not None:
            t = min(t, first)
        exp = self.records.next_expiry()
        return t if exp is None else min(t, exp)

    def handle_timer(self, now: float) -> None:
        for kind, ref in self._timers.due(now):
            if kind is TimerKind.REQUEST:
                if ref in self._requests:
                    self._fail_request(ref, now)
            elif (op := self._ops.get(ref)) is not None:
                if isinstance(op, LookupOp):
                    self._finish_lookup(op, now)
                elif isinstance(op, WriteOp):
                    self._finish_write(op, now)
        for e in self.records.expire(now):
            self._events.append(RecordExpired(e.record.key, e.record.pub, e.cached))
        if now >= self._next_liveness:
            self._next_liveness = now + self.config.liveness_tick_s
            self._liveness(now)
        self.maintenance.handle_timer(now)
        self.topics.due(now)
        self.listening.handle_timer(now)

    # == persistence (node.durability) ===========================================================

    def persistent(self, snapshot: Snapshot | None, now: float) -> Durability:
        """Turn on durable acknowledgements, after restoring ``snapshot`` (a previous run's)."""
        if self.durability is None:
            self.durability = Durability(
                self.records, self.providers, self.maintenance, self.table, self.topics
            )
            if snapshot is not None:
                self.durability.restore(snapshot, now, self.wall_offset_s)
        return self.durability

    def take_batch(self, now: float, with_contacts: bool = False) -> Batch:
        """Everything changed since the last batch, for the I/O side to commit."""
        assert self.durability is not None
        return self.durability.take_batch(now, self.wall_offset_s, with_contacts)

    def persisted(self, gen: int) -> None:
        """Batch ``gen`` is on disk: the acknowledgements it covered may go."""
        if self.durability is not None:
            for out in self.durability.persisted(gen):
                self._send(out.peer, out.message)

    # == outputs ==================================================================================

    def messages_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # == sending (also the OpHost that maintenance and topics drive) ==============================

    def _send(self, peer: NodeId, msg: Message, via: NodeId | None = None) -> None:
        self.stats.messages_out[_TYPE_NAME[msg.type]] += 1
        self._out.append(Outgoing(peer, msg, via))

    def send_message(self, peer: NodeId, msg: Message) -> None:
        self._send(peer, msg)

    def new_rid(self) -> int:
        return self._requests.new_rid()

    def request(self, peer: NodeId, msg: Request, now: float) -> None:
        self._request(peer, msg, None, now)

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def _request(
        self,
        peer: NodeId,
        msg: Request,
        op_id: int | None,
        now: float,
        timeout_s: float | None = None,
        via: NodeId | None = None,
    ) -> None:
        self._requests.add(peer, msg, op_id, now, timeout_s or self.config.request_timeout_s)
        self._send(peer, msg, via)

    def _complete(self, op: Op, result: OpResult, now: float) -> None:
        self._ops.pop(op.op_id)
        if op.purpose is Purpose.JOIN:
            self.maintenance.join_done()
        elif op.purpose is Purpose.REFRESH:
            self.maintenance.refresh_done(now)
        elif op.purpose is Purpose.DISCOVERY and isinstance(result, GetPeersResult):
            self.topics.discovered(result.topic, result, now)
        elif op.purpose is Purpose.LISTEN and isinstance(result, FindNodeResult):
            self.listening.lookup_done(result, now)
        if not op.purpose.internal:
            self._events.append(OpCompleted(op.caller_id, result))

    # == commands =================================================================================

    def find_node(self, target: bytes, now: float) -> int:
        return self.lookup(OpKind.FIND_NODE, target, now, Purpose.USER)

    def get(self, key: bytes, now: float) -> int:
        op = self._new_lookup(OpKind.FIND_VALUE, key, now, Purpose.USER)
        op.best = self.records.get(key, now)
        self._step_lookup(op, now)
        return op.op_id

    def get_peers(self, topic: bytes, now: float) -> int:
        return self.lookup(OpKind.GET_PEERS, topic, now, Purpose.USER)

    def store(self, key: bytes, data: bytes, now: float) -> int:
        """Sign and store ``data`` under ``key`` (a 32-byte DHT key), with a ts above every ts
        the write's lookup sees there (``owned.finalize``: the open-namespace rule)."""
        return self.write(open_draft(key, data), now, Purpose.USER)

    def put_mutable(
        self, salt: bytes, data: bytes, now: float, seq: int | None = None, cas: int | None = None
    ) -> int:
        """Write our mutable record named ``salt`` (next seq unless ``seq``; CAS on ``cas``)."""
        draft = mutable_draft(self.identity.public_key, salt, data, seq, cas)
        return self.write(draft, now, Purpose.USER)

    def put_immutable(self, data: bytes, now: float) -> int:
        """Store ``data`` under its hash."""
        return self.write(immutable_draft(data), now, Purpose.USER)

    def announce(
        self, topic: bytes, port: int | None, meta: bytes, now: float, leave: bool = False
    ) -> int:
        provider = sign_provider(self.identity, topic, self.wall_ms(now), port or 0, meta, leave)
        return self.write(provider, now, Purpose.USER)

    def join_topic(
        self, topic: bytes, port: int | None, meta: bytes, now: float, announce_now: bool = True
    ) -> None:
        """Keep discovering ``topic``; with ``port`` also announce it (active join) and keep
        re-announcing it. ``announce_now=False``: the caller just announced it."""
        self.topics.join(topic, port, meta, now, announce_now)

    def leave_topic(self, topic: bytes, now: float) -> int | None:
        """Stop discovering; withdraw our announcement with a signed tombstone if we had one."""
        jt = self.topics.leave(topic)
        if jt is None or not jt.announcing:
            return None
        return self.announce(topic, jt.port, b"", now, leave=True)

    def listen(self, key: bytes, now: float) -> bool:
        """Report every new version of ``key`` stored anywhere (``RecordUpdated`` events)."""
        return self.listening.listen(key, now, self.records.get(key, now))

    def unlisten(self, key: bytes, now: float) -> bool:
        return self.listening.unlisten(key, now)

    def ping(self, peer: NodeId, now: float) -> int:
        return self._ping(peer, now, Purpose.USER).op_id

    def join(self, now: float) -> int:
        """Look up our own ID, then refresh every bucket farther than our closest neighbour."""
        return self.lookup(OpKind.FIND_NODE, self.id, now, Purpose.JOIN)

    def send_signal(
        self, target: NodeId, payload: bytes, now: float, via: NodeId | None = None
    ) -> bool:
        """Route a connection-setup payload to ``target`` through connected peers."""
        fwd = self.relay.originate(target, payload, self.connected, via)
        if fwd is None:
            return False
        self._send(fwd.peer, fwd.signal)
        return True

    # == lookups ==================================================================================

    def lookup(
        self, kind: OpKind, target: bytes, now: float, purpose: Purpose, width: int | None = None
    ) -> int:
        """Start a lookup; ``width``: how many closest peers must answer (default ``k``)."""
        op = self._new_lookup(kind, target, now, purpose, width)
        self._step_lookup(op, now)
        return op.op_id

    def _new_lookup(
        self, kind: OpKind, target: bytes, now: float, purpose: Purpose, width: int | None = None
    ) -> LookupOp:
        self.stats.lookups += 1
        self.table.touch_bucket(target, now)
        k = self.config.k if width is None else max(1, min(width, self.config.k))
        it = LookupIter(target, self.id, self.table.closest(target, k), k, self.config.alpha)
        deadline = now + self.config.lookup_deadline_s
        op_id = self._ops.new_id()
        op = LookupOp(
            op_id=op_id, started=now, purpose=purpose, kind=kind, target=target, it=it,
            deadline=deadline,
        )  # fmt: skip
        self._ops.add(op)
        self._timers.arm(deadline, TimerKind.OPERATION, op_id)
        return op

    def _step_lookup(self, op: LookupOp, now: float) -> None:
        if op.op_id not in self._ops:
            return
        while (c := op.it.next_peer()) is not None:
            self._request(c.id, op.request(self.new_rid()), op.op_id, now, via=c.via)
        if op.done:
            self._finish_lookup(op, now)

    def _lookup_response(self, op: LookupOp, peer: NodeId, msg: Response, now: float) -> None:
        answer = op.on_response(peer, msg, self.wall_ms(now), self.config)
        if answer is Answer.REJECTED:
            self.stats.records_rejected += 1
        elif answer is Answer.VALUE_FOUND:
            self._timers.arm(now + GET_GRACE_S, TimerKind.OPERATION, op.op_id)
        if op.settled:
            self._finish_lookup(op, now)
        else:
            self._step_lookup(op, now)

    def _finish_lookup(self, op: LookupOp, now: float) -> None:
        if op.op_id not in self._ops:
            return
        self.table.touch_bucket(op.target, now)
        done = op.summary(now)
        self.stats.lookup_latencies_s.append(done.duration_s)
        self.stats.lookup_hops.append(done.hops)
        self._events.append(done)
        cache_at = op.cache_target()
        if cache_at is not None and op.best is not None:
            self._request(cache_at, record_request(self.new_rid(), op.best, True), None, now)
        if op.then is not None:
            self._ops.pop(op.op_id)
            closest = [c for c in op.it.closest_succeeded() if c != self.id]
            then = op.then
            if then.draft is not None and then.payload is None:
                then.payload = finalize(then.draft, self.identity, op.best, self.wall_ms(now))
                self._keep_own(then.payload, now, then.draft.cas)
            self._start_write(then, closest, now)
        else:
            self._complete(op, op.result(done), now)

    # == writes: store and announce ===============================================================

    def write(
        self,
        payload: Record | ProviderRecord | Draft,
        now: float,
        purpose: Purpose,
        reports_as: int | None = None,
    ) -> int:
        """Keep ``payload`` here, find the k closest, send it to them (one path for every kind).

        A ``Draft`` of an owned record is signed when its lookup ends: that lookup is a
        collecting FIND_VALUE, so the record is built on the best one the k closest hold (the
        next seq). A ready ``Record`` (a republish) only needs the k closest, and its lookup
        carries it (FIND_NODE_STORE) to the nodes that count themselves among them. An open
        store is optimistic: signed now, above the ts of our own copy, and written like a ready
        record; only if a holder answers ``stale`` (it has a newer ts, e.g. one far ahead) is
        it redone once as a collecting write that signs above it (``_finish_write``), under the
        caller's operation id (``reports_as``).
        """
        retry = None
        if isinstance(payload, Draft) and payload.kind is RecordKind.OPEN and reports_as is None:
            retry = payload
            best = self.records.get(payload.key, now)
            payload = finalize(payload, self.identity, best, self.wall_ms(now))
        draft = payload if isinstance(payload, Draft) else None
        if isinstance(payload, Record):
            self._keep_own(payload, now)
            key = payload.key
        elif isinstance(payload, ProviderRecord):
            self.providers.put(payload, now)
            key = payload.topic
        else:
            key = payload.key
        signed = None if isinstance(payload, Draft) else payload
        write = WriteOp(
            op_id=self._ops.new_id(),
            started=now,
            purpose=purpose,
            payload=signed,
            draft=draft,
            retry=retry,
            reports_as=reports_as,
        )
        kind = OpKind.FIND_NODE if draft is None else OpKind.FIND_VALUE
        lookup = self._new_lookup(kind, key, now, Purpose.WRITE)
        if draft is not None:
            lookup.collect = True
            lookup.best = self.records.get(key, now)
        lookup.then = write
        self._ops.add(write)
        self._step_lookup(lookup, now)
        return write.op_id

    def _keep_own(self, record: Record, now: float, cas: int | None = None) -> None:
        """Our own record: keep a copy and republish it — unless our own store refuses it as a
        holder would (a lost CAS, a seq below ours): then it only goes out to be refused."""
        result = self.records.put(record, now, cas=cas)
        if result is PutResult.STORED:
            self._events.append(RecordStored(record, False, True, None))
            self.listening.stored(record, None, now)
        if result.value not in LOST_WRITE_REASONS:
            self.maintenance.authored_record(record, now)

    def _drop_lost(self, op: WriteOp, now: float) -> None:
        """A mutable write the holders refused as a conflict: forget our copy of it, so that
        we neither serve nor republish a version the network rejected."""
        r = op.payload
        if not isinstance(r, Record) or r.kind is not RecordKind.MUTABLE:
            return
        if not any(x in LOST_WRITE_REASONS for x in op.reasons):
            return
        self.records.discard(r)
        if self.authored.get(r.key, (None, 0.0))[0] == r:
            del self.authored[r.key]

    def _start_write(self, op: WriteOp, targets: list[NodeId], now: float) -> None:
        for peer in op.begin(targets, self.config):
            self._request(peer, op.request(self.new_rid()), op.op_id, now)
        deadline = now + self.config.request_timeout_s + STORE_GRACE_S
        self._timers.arm(deadline, TimerKind.OPERATION, op.op_id)
        self._check_write(op, now)

    def _check_write(self, op: WriteOp, now: float) -> None:
        if not op.done and op.settled:
            self._finish_write(op, now)

    def _finish_write(self, op: WriteOp, now: float) -> None:
        if op.done:
            return
        op.done = True
        result = op.result(now)
        if op.retry is not None and PutResult.STALE.value in op.reasons:
            self._ops.pop(op.op_id)
            self.write(op.retry, now, op.purpose, reports_as=op.op_id)
            return
        if not result.ok:
            self._drop_lost(op, now)
        self._complete(op, result, now)

    # == liveness =================================================================================

    def _ping(self, peer: NodeId, now: float, purpose: Purpose) -> PingOp:
        op = PingOp(op_id=self._ops.new_id(), started=now, purpose=purpose, peer=peer)
        self._ops.add(op)
        if purpose is not Purpose.USER:
            self._pinging.add(peer)
        timeout = self.config.ping_timeout_s if purpose is Purpose.LIVENESS else None
        self._request(peer, Ping(self.new_rid()), op.op_id, now, timeout)
        return op

    def _ping_done(self, op: PingOp, ok: bool, now: float) -> None:
        self._pinging.discard(op.peer)
        if op.purpose is Purpose.USER:
            self._complete(op, PingResult(op.peer, ok, now - op.started), now)
            return
        self._ops.pop(op.op_id)
        if ok:
            self.table.update(op.peer, now)
            return
        if self.table.remove(op.peer):
            self._events.append(ContactRemoved(op.peer, RemovalReason.PING_TIMEOUT))
        if op.peer in self.connected:
            self._events.append(PeerUnresponsive(op.peer))

    def _liveness(self, now: float) -> None:
        idle = now - self.config.ping_idle_s
        for peer in list(self.connected):
            if peer not in self._pinging and self.last_heard.get(peer, now) <= idle:
                self._ping(peer, now, Purpose.LIVENESS)
