"""The DHT protocol engine: sans-IO Kademlia with signed records and topic discovery.

Theory of operation (the aioquic pattern):

- Inputs: ``receive(peer, data, now)`` for every message from an authenticated peer,
  ``peer_connected`` / ``peer_disconnected`` / ``add_contact`` for link changes,
  ``delivery_failed(peer, now)`` when the runtime could not reach a peer, ``handle_timer(now)`` when
  the deadline from ``get_timer()`` passes, and the commands (``get``, ``store``, ``find_node``,
  ``ping``, ``announce``, ``get_peers``, ``join_topic`` ...) which return an operation id.
- Outputs are pulled: ``messages_to_send()`` (``Outgoing(peer, message, via)``; ``via`` names the
  peer that introduced an unconnected contact, a relay for connection setup), ``next_event()``
  (``events.OpCompleted`` carries every operation's result) and ``get_timer()``.
- Nothing here reads a clock, draws global randomness or does I/O. ``now`` is monotonic seconds;
  wall-clock milliseconds for record timestamps are ``now + wall_offset_s``.

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
from heapq import heappop, heappush

from node import codec
from node.config import Config
from node.events import (
    AnnounceResult,
    ContactAdded,
    ContactRemoved,
    Event,
    FindNodeResult,
    GetPeersResult,
    GetResult,
    LookupDone,
    MaintenanceRefresh,
    MaintenanceRepair,
    MaintenanceRepublish,
    OpCompleted,
    OpResult,
    PeerMisbehaved,
    PeerUnresponsive,
    PingResult,
    RecordExpired,
    RecordStored,
    SignalReceived,
    StoreResult,
    TopicPeerFound,
    TopicPeerLost,
)
from node.identity import Identity
from node.ids import ID_BITS, NodeId, random_id_in_bucket
from node.lookup import LookupIter
from node.messages import (
    RESPONSE_TYPES,
    Announce,
    AnnounceAck,
    FindNode,
    FindValue,
    GetPeers,
    HasValue,
    HasValueAck,
    Message,
    MsgType,
    Nodes,
    Peers,
    Ping,
    Pong,
    Request,
    Signal,
    Store,
    StoreAck,
    Value,
)
from node.records import (
    ProviderRecord,
    Record,
    better,
    sign_provider,
    sign_record,
    validate_provider,
    validate_record,
)
from node.routing import RoutingTable
from node.storage import ProviderStore, PutResult, RecordStore

GET_GRACE_S = 0.05  # after the first value: how long in-flight answers may still improve it
STORE_GRACE_S = 0.25  # slack after the request timeout before a write gives up
REPAIR_BATCH = 64  # records checked per repair tick
REPAIR_TICK_S = 1.0
REFRESH_CHECK_S = 30.0
SIGNAL_DEDUP_MAX = 4096
LATENCY_SAMPLES = 1000
RTT_EWMA_WEIGHT = 0.25


@dataclass(frozen=True, slots=True)
class Outgoing:
    peer: NodeId
    message: Message
    via: NodeId | None = None


@dataclass(slots=True)
class _Pending:
    peer: NodeId
    expects: tuple[MsgType, ...]
    op_id: int | None
    sent_at: float
    request: Request


@dataclass(slots=True)
class _Op:
    op_id: int
    started: float
    internal: bool = False  # maintenance: no OpCompleted event


@dataclass(slots=True)
class _LookupOp(_Op):
    kind: str = "find_node"  # find_node | find_value | get_peers
    target: bytes = b""
    it: LookupIter | None = None
    deadline: float = 0.0
    best: Record | None = None
    best_from: NodeId | None = None
    lacking: list[NodeId] = field(default_factory=list)
    providers: dict[NodeId, ProviderRecord] = field(default_factory=dict)
    provider_depth: int = 0
    then: _Op | None = None  # a write phase that runs on the lookup's result


@dataclass(slots=True)
class _WriteOp(_Op):
    """The write phase of a store or an announce: send to the closest, count acks."""

    record: Record | None = None
    provider: ProviderRecord | None = None
    targets: list[NodeId] = field(default_factory=list)
    acks: int = 0
    answered: int = 0
    quorum: int = 0
    reasons: list[str] = field(default_factory=list)
    done: bool = False


@dataclass(slots=True)
class _PingOp(_Op):
    peer: NodeId = field(default_factory=lambda: NodeId(b""))
    purpose: str = "user"  # user | liveness | bucket


@dataclass(slots=True)
class _RepairRound:
    keys: list[bytes]
    checked: int = 0
    restored: int = 0
    outstanding: int = 0
    # Per key: the next-closest contacts, asked in turn when a closer one does not answer, so
    # each key is checked on k *live* nodes even when some of the k closest contacts died.
    spare: dict[bytes, list[NodeId]] = field(default_factory=dict)


@dataclass(slots=True)
class JoinedTopic:
    topic: bytes
    port: int | None
    meta: bytes
    known: dict[NodeId, ProviderRecord] = field(default_factory=dict)
    next_announce: float = 0.0
    next_discovery: float = 0.0
    discovering: bool = False

    @property
    def announcing(self) -> bool:
        return self.port is not None


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
        self.records = RecordStore(config.record_ttl_s, config.cache_ttl_s, config.max_records)
        self.providers = ProviderStore(config.provider_ttl_s, config.max_providers_per_topic)
        self.stats = Stats()
        self.connected: set[NodeId] = set()
        self.last_heard: dict[NodeId, float] = {}
        self.peer_rtt: dict[NodeId, float] = {}  # smoothed request → response time, seconds
        self.malformed_by_peer: Counter[NodeId] = Counter()
        self.authored: dict[bytes, tuple[Record, float]] = {}  # key → (record, next republish)
        self._next_republish = math.inf  # the earliest republish time in `authored`
        self.joined: dict[bytes, JoinedTopic] = {}

        self._out: list[Outgoing] = []
        self._events: deque[Event] = deque()
        self._pending: dict[int, _Pending] = {}
        self._ops: dict[int, _Op] = {}
        self._timers: list[tuple[float, int, int]] = []  # (deadline, kind, ref) lazily deleted
        self._next_op = 1
        self._pinging: set[NodeId] = set()
        self._signals_seen: dict[int, None] = {}
        self._refresh_queue: deque[int] = deque()
        self._next_refresh_start = now
        self._refresh_running = False
        self._repair: _RepairRound | None = None
        self._refresh_ops: set[int] = set()
        self._join_ops: set[int] = set()
        self._join_refresh: set[int] = set()  # bucket indices queued by join, not yet started
        self._refresh_table_size = 0  # routing-table size when the running refresh started
        self._discovery_ops: dict[int, bytes] = {}
        self._next_liveness = now + config.liveness_tick_s
        self._next_refresh_check = now + REFRESH_CHECK_S
        self._next_repair = now + config.repair_interval_s
        self._next_repair_tick = now

    # == clocks ===================================================================================

    def wall_ms(self, now: float) -> int:
        return int((now + self.wall_offset_s) * 1000)

    # == inputs: links ============================================================================

    def peer_connected(self, peer: NodeId, now: float) -> None:
        """An authenticated link to ``peer`` is open (its HELLO was verified)."""
        self.connected.add(peer)
        self._heard(peer, now)

    def peer_disconnected(self, peer: NodeId, now: float) -> None:
        self.connected.discard(peer)
        self.peer_rtt.pop(peer, None)
        # Requests to a peer whose link is gone cannot be answered: fail them now.
        self.delivery_failed(peer, now)

    def add_contact(self, peer: NodeId, now: float) -> None:
        """A contact verified by other means (simulations, tests)."""
        self._heard(peer, now)

    def delivery_failed(self, peer: NodeId, now: float) -> None:
        """Messages to ``peer`` could not be delivered (dial failed, link closed)."""
        for rid in [r for r, p in self._pending.items() if p.peer == peer]:
            self._fail_request(rid, now)

    # == inputs: messages =========================================================================

    def receive(self, peer: NodeId, data: bytes | Message, now: float) -> None:
        """Handle one message from ``peer``. Never raises for any ``data``."""
        if isinstance(data, bytes | bytearray | memoryview):
            try:
                msg = codec.decode(bytes(data))
            except codec.DecodeError as exc:
                self._malformed(peer, str(exc))
                return
        else:
            msg = data
        self.stats.messages_in[msg.type.name] += 1
        self._heard(peer, now)
        match msg:
            case Ping():
                self._send(peer, Pong(msg.rid))
            case FindNode():
                self._send(peer, Nodes(msg.rid, self._closest_for(msg.target, peer)))
            case FindValue():
                self._on_find_value(peer, msg, now)
            case Store():
                self._on_store(peer, msg, now)
            case HasValue():
                has = self.records.has_same_or_better(msg.key, msg.ts, msg.pub, now)
                self._send(peer, HasValueAck(msg.rid, has))
            case Announce():
                self._on_announce(peer, msg, now)
            case GetPeers():
                provs = tuple(self.providers.get(msg.topic, now, include_leaves=True))
                provs = provs[: codec.MAX_PROVIDERS_PER_MESSAGE]
                self._send(peer, Peers(msg.rid, provs, self._closest_for(msg.topic, peer)))
            case Signal():
                self._on_signal(peer, msg, now)
            case Pong() | Nodes() | Value() | StoreAck() | HasValueAck() | AnnounceAck() | Peers():
                self._on_response(peer, msg, now)
            case _:
                self.stats.dropped_unexpected += 1

    def _malformed(self, peer: NodeId, reason: str) -> None:
        self.stats.dropped_malformed += 1
        self.malformed_by_peer[peer] += 1
        self._events.append(PeerMisbehaved(peer, reason, self.malformed_by_peer[peer]))

    def _heard(self, peer: NodeId, now: float) -> None:
        if peer == self.id:
            return
        self.last_heard[peer] = now
        known = peer in self.table
        oldest = self.table.update(peer, now)
        if not known and peer in self.table:
            self._events.append(ContactAdded(peer))
        if oldest is not None and oldest not in self._pinging:
            # A full bucket: the oldest contact must prove it is alive before a newcomer may
            # replace it — unless we heard from it recently (BEP 5's "good" node), in which case
            # the newcomer simply waits in the replacement cache.
            seen = self.last_heard.get(oldest)
            if seen is None or now - seen >= self.config.bucket_ping_after_s:
                self._ping(oldest, now, purpose="bucket")

    def _closest_for(self, target: bytes, asker: NodeId) -> tuple[NodeId, ...]:
        return tuple(self.table.closest(target, self.config.k, exclude=asker))

    # -- requests served --------------------------------------------------------------------------

    def _on_find_value(self, peer: NodeId, msg: FindValue, now: float) -> None:
        rec = self.records.get(msg.key, now)
        nodes = self._closest_for(msg.key, peer)
        if rec is not None:
            self._send(peer, Value(msg.rid, rec, nodes))
        else:
            self._send(peer, Nodes(msg.rid, nodes))

    def _on_store(self, peer: NodeId, msg: Store, now: float) -> None:
        reason = validate_record(
            msg.record,
            self.wall_ms(now),
            max_data_bytes=self.config.max_record_data_bytes,
            max_future_skew_ms=self.config.max_future_skew_ms,
        )
        if reason is not None:
            self.stats.records_rejected += 1
            self._send(peer, StoreAck(msg.rid, False, reason))
            return
        result = self.records.put(msg.record, now, cached=msg.cached)
        if result is PutResult.STORED:
            self._events.append(RecordStored(msg.record, msg.cached, False, peer))
        self._send(peer, StoreAck(msg.rid, result.ok, result.value))

    def _on_announce(self, peer: NodeId, msg: Announce, now: float) -> None:
        reason = validate_provider(
            msg.provider, self.wall_ms(now), max_future_skew_ms=self.config.max_future_skew_ms
        )
        if reason is not None:
            self.stats.records_rejected += 1
            self._send(peer, AnnounceAck(msg.rid, False, reason))
            return
        result = self.providers.put(msg.provider, now)
        self._send(peer, AnnounceAck(msg.rid, result.ok, result.value))

    def _on_signal(self, peer: NodeId, msg: Signal, now: float) -> None:
        if msg.sid in self._signals_seen:
            return
        self._signals_seen[msg.sid] = None
        if len(self._signals_seen) > SIGNAL_DEDUP_MAX:
            del self._signals_seen[next(iter(self._signals_seen))]
        if msg.target == self.id:
            self._events.append(SignalReceived(msg.source, msg.payload))
            return
        if msg.hops_left <= 0:
            return
        nxt = self._signal_next_hop(msg.target, exclude={peer, msg.source})
        if nxt is not None:
            self._send(nxt, Signal(msg.sid, msg.source, msg.target, msg.hops_left - 1, msg.payload))

    def _signal_next_hop(self, target: NodeId, exclude: set[NodeId]) -> NodeId | None:
        if target in self.connected:
            return target
        best: NodeId | None = None
        best_d = 0
        t = int.from_bytes(target, "big")
        for p in self.connected:
            if p in exclude:
                continue
            d = int.from_bytes(p, "big") ^ t
            if best is None or d < best_d:
                best, best_d = p, d
        return best

    # -- responses --------------------------------------------------------------------------------

    def _on_response(self, peer: NodeId, msg: Message, now: float) -> None:
        rid: int = getattr(msg, "rid", -1)
        p = self._pending.get(rid)
        if p is None or p.peer != peer or msg.type not in p.expects:
            self.stats.dropped_unexpected += 1
            return
        del self._pending[rid]
        sample = now - p.sent_at
        prev = self.peer_rtt.get(peer)
        self.peer_rtt[peer] = sample if prev is None else prev + RTT_EWMA_WEIGHT * (sample - prev)
        op = self._ops.get(p.op_id) if p.op_id is not None else None
        if op is None:
            if isinstance(msg, HasValueAck):
                self._repair_ack(p, msg, now)
            return
        if isinstance(op, _LookupOp):
            self._lookup_response(op, peer, msg, now)
        elif isinstance(op, _WriteOp):
            self._write_response(op, peer, msg, now)
        elif isinstance(op, _PingOp):
            self._ping_done(op, True, now)

    # == inputs: time =============================================================================

    def get_timer(self) -> float | None:
        while self._timers:
            _at, kind, ref = self._timers[0]
            if (kind == 0 and ref not in self._pending) or (kind == 1 and ref not in self._ops):
                heappop(self._timers)
                continue
            break
        candidates = [
            self._next_liveness,
            self._next_refresh_check,
            self._next_repair,
        ]
        if self._timers:
            candidates.append(self._timers[0][0])
        if self._refresh_queue and not self._refresh_running:
            candidates.append(self._next_refresh_start)
        if self._repair is not None:
            candidates.append(self._next_repair_tick)
        exp = self.records.next_expiry()
        if exp is not None:
            candidates.append(exp)
        if self.authored:
            candidates.append(self._next_republish)
        for jt in self.joined.values():
            if not jt.discovering:
                candidates.append(jt.next_discovery)
            if jt.announcing:
                candidates.append(jt.next_announce)
        return min(candidates)

    def handle_timer(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, kind, ref = heappop(self._timers)
            if kind == 0:
                if ref in self._pending:
                    self._fail_request(ref, now)
            else:
                op = self._ops.get(ref)
                if op is not None:
                    self._op_deadline(op, now)
        for e in self.records.expire(now):
            self._events.append(RecordExpired(e.record.key, e.record.pub, e.cached))
        if now >= self._next_liveness:
            self._next_liveness = now + self.config.liveness_tick_s
            self._liveness(now)
        if now >= self._next_refresh_check:
            self._next_refresh_check = now + REFRESH_CHECK_S
            self._queue_stale_buckets(now)
        if self._refresh_queue and not self._refresh_running and now >= self._next_refresh_start:
            self._start_refresh(now)
        if now >= self._next_repair:
            self._next_repair = now + self.config.repair_interval_s
            self._start_repair(now)
        if self._repair is not None and now >= self._next_repair_tick:
            self._repair_tick(now)
        self._republish_due(now)
        self._topics_due(now)

    def _arm(self, deadline: float, kind: int, ref: int) -> None:
        heappush(self._timers, (deadline, kind, ref))

    # == outputs ==================================================================================

    def messages_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # == sending ==================================================================================

    def _send(self, peer: NodeId, msg: Message, via: NodeId | None = None) -> None:
        self.stats.messages_out[msg.type.name] += 1
        self._out.append(Outgoing(peer, msg, via))

    def _new_rid(self) -> int:
        while True:
            rid = self.rng.getrandbits(64)
            if rid not in self._pending:
                return rid

    def _request(
        self,
        peer: NodeId,
        msg: Request,
        op_id: int | None,
        now: float,
        timeout_s: float | None = None,
        via: NodeId | None = None,
    ) -> None:
        self._pending[msg.rid] = _Pending(peer, RESPONSE_TYPES[msg.type], op_id, now, msg)
        self._arm(now + (timeout_s or self.config.request_timeout_s), 0, msg.rid)
        self._send(peer, msg, via)

    def _fail_request(self, rid: int, now: float) -> None:
        p = self._pending.pop(rid)
        self.stats.requests_failed += 1
        op = self._ops.get(p.op_id) if p.op_id is not None else None
        if op is None and isinstance(p.request, HasValue):
            self._repair_failed(p.request, now)
        if isinstance(op, _PingOp):
            self._ping_done(op, False, now)
            return
        if self.table.record_failure(p.peer, self.config.max_request_failures):
            self._events.append(ContactRemoved(p.peer, "unresponsive"))
        if isinstance(op, _LookupOp):
            assert op.it is not None
            op.it.on_failure(p.peer)
            self._step_lookup(op, now)
        elif isinstance(op, _WriteOp):
            op.answered += 1
            op.reasons.append("timeout")
            self._check_write(op, now)

    def _new_op_id(self) -> int:
        op_id = self._next_op
        self._next_op += 1
        return op_id

    def _complete(self, op: _Op, result: OpResult, now: float) -> None:
        self._ops.pop(op.op_id, None)
        if op.op_id in self._join_ops:
            # The self-lookup filled the near buckets: now refresh every bucket farther than
            # the closest neighbour (they are known only once the lookup is done).
            self._join_ops.discard(op.op_id)
            deepest = self.table.deepest_bucket()
            queued = [
                i
                for i in range(deepest)
                if i not in self._refresh_queue and not self.table.bucket_full(i)
            ]
            self._refresh_queue.extend(queued)
            self._join_refresh.update(queued)
        if op.op_id in self._refresh_ops:
            self._refresh_ops.discard(op.op_id)
            self._refresh_running = False
            self._next_refresh_start = now + self.config.refresh_stagger_s
            if len(self.table) <= self._refresh_table_size and self._join_refresh:
                # This refresh met nobody new: the network is small enough that we know it
                # already, and the remaining join refreshes would only repeat known answers.
                self._refresh_queue = deque(
                    i for i in self._refresh_queue if i not in self._join_refresh
                )
                self._join_refresh.clear()
        topic = self._discovery_ops.pop(op.op_id, None)
        if topic is not None and isinstance(result, GetPeersResult):
            self._discovery_done(topic, result, now)
        if not op.internal:
            self._events.append(OpCompleted(op.op_id, result))

    # == commands =================================================================================

    def find_node(self, target: bytes, now: float) -> int:
        return self._start_lookup("find_node", target, now).op_id

    def get(self, key: bytes, now: float) -> int:
        op = self._start_lookup("find_value", key, now, start=False)
        op.best = self.records.get(key, now)
        self._step_lookup(op, now)
        return op.op_id

    def get_peers(self, topic: bytes, now: float) -> int:
        return self._start_lookup("get_peers", topic, now).op_id

    def store(self, key: bytes, data: bytes, now: float) -> int:
        """Sign and store ``data`` under ``key`` (a 32-byte DHT key)."""
        ts = self.wall_ms(now)
        prev = self.records.get(key, now)
        if prev is not None and prev.ts >= ts:
            ts = prev.ts + 1  # keep our own writes ordered even within one millisecond
        record = sign_record(self.identity, key, data, ts)
        return self._store_record(record, now, internal=False).op_id

    def _store_record(self, record: Record, now: float, internal: bool) -> _Op:
        if self.records.put(record, now) is PutResult.STORED:
            self._events.append(RecordStored(record, False, True, None))
        republish_at = now + self.config.republish_interval_s
        self.authored[record.key] = (record, republish_at)
        self._next_republish = min(self._next_republish, republish_at)
        write = _WriteOp(self._new_op_id(), now, internal, record=record)
        lookup = self._start_lookup("find_node", record.key, now, start=False)
        lookup.internal = True
        lookup.then = write
        self._ops[write.op_id] = write
        self._step_lookup(lookup, now)
        return write

    def announce(
        self, topic: bytes, port: int | None, meta: bytes, now: float, leave: bool = False
    ) -> int:
        provider = sign_provider(self.identity, topic, self.wall_ms(now), port or 0, meta, leave)
        return self._announce_provider(provider, now, internal=False).op_id

    def _announce_provider(self, provider: ProviderRecord, now: float, internal: bool) -> _Op:
        self.providers.put(provider, now)
        write = _WriteOp(self._new_op_id(), now, internal, provider=provider)
        lookup = self._start_lookup("find_node", provider.topic, now, start=False)
        lookup.internal = True
        lookup.then = write
        self._ops[write.op_id] = write
        self._step_lookup(lookup, now)
        return write

    def join_topic(
        self, topic: bytes, port: int | None, meta: bytes, now: float, announce_now: bool = True
    ) -> None:
        """Keep discovering ``topic``; with ``port`` also announce it (active join) and keep
        re-announcing it. ``announce_now=False``: the caller just announced it."""
        jt = self.joined.get(topic)
        if jt is None:
            jt = self.joined[topic] = JoinedTopic(topic, port, meta)
        else:
            jt.port, jt.meta = port, meta
        jt.next_announce = now if announce_now else now + self.config.reannounce_interval_s
        jt.next_discovery = now
        self._topics_due(now)

    def leave_topic(self, topic: bytes, now: float) -> int | None:
        """Stop discovering; withdraw our announcement with a signed tombstone if we had one."""
        jt = self.joined.pop(topic, None)
        if jt is None or not jt.announcing:
            return None
        return self.announce(topic, jt.port, b"", now, leave=True)

    def ping(self, peer: NodeId, now: float) -> int:
        return self._ping(peer, now, purpose="user").op_id

    def _ping(self, peer: NodeId, now: float, purpose: str) -> _PingOp:
        op = _PingOp(self._new_op_id(), now, purpose != "user", peer=peer, purpose=purpose)
        self._ops[op.op_id] = op
        if purpose != "user":
            self._pinging.add(peer)
        timeout = self.config.ping_timeout_s if purpose == "liveness" else None
        self._request(peer, Ping(self._new_rid()), op.op_id, now, timeout)
        return op

    def join(self, now: float) -> int:
        """Look up our own ID, then refresh every bucket farther than our closest neighbour."""
        op = self._start_lookup("find_node", self.id, now)
        self._join_ops.add(op.op_id)
        return op.op_id

    def send_signal(
        self, target: NodeId, payload: bytes, now: float, via: NodeId | None = None
    ) -> bool:
        """Route a connection-setup payload to ``target`` through connected peers."""
        sid = self.rng.getrandbits(64)
        self._signals_seen[sid] = None
        hop = via if via is not None and via in self.connected else None
        hop = hop or self._signal_next_hop(target, exclude=set())
        if hop is None:
            return False
        self._send(hop, Signal(sid, self.id, target, self.config.signal_hop_limit, payload))
        return True

    # == lookups ==================================================================================

    def _start_lookup(self, kind: str, target: bytes, now: float, start: bool = True) -> _LookupOp:
        self.stats.lookups += 1
        self.table.touch_bucket(target, now)
        it = LookupIter(
            target, self.id, self.table.closest(target, self.config.k), self.config.k,
            self.config.alpha,
        )  # fmt: skip
        op = _LookupOp(
            self._new_op_id(), now, kind=kind, target=target, it=it,
            deadline=now + self.config.lookup_deadline_s,
        )  # fmt: skip
        self._ops[op.op_id] = op
        self._arm(op.deadline, 1, op.op_id)
        if start:
            self._step_lookup(op, now)
        return op

    def _step_lookup(self, op: _LookupOp, now: float) -> None:
        it = op.it
        assert it is not None
        if op.op_id not in self._ops:
            return
        while (c := it.next_peer()) is not None:
            rid = self._new_rid()
            req: Request
            if op.kind == "find_value":
                req = FindValue(rid, op.target)
            elif op.kind == "get_peers":
                req = GetPeers(rid, op.target)
            else:
                req = FindNode(rid, NodeId(op.target))
            self._request(c.id, req, op.op_id, now, via=c.via)
        # After a value was found, answers still in flight may improve it (GET_GRACE_S timer).
        if it.finished and (op.best_from is None or it.in_flight == 0):
            self._finish_lookup(op, now)

    def _lookup_response(self, op: _LookupOp, peer: NodeId, msg: Message, now: float) -> None:
        it = op.it
        assert it is not None
        nodes: tuple[NodeId, ...] = getattr(msg, "nodes", ())
        if isinstance(msg, Value):
            r = msg.record
            reason = None if r.key == op.target else "record for another key"
            reason = reason or validate_record(
                r, self.wall_ms(now), max_data_bytes=self.config.max_record_data_bytes,
                max_future_skew_ms=self.config.max_future_skew_ms,
            )  # fmt: skip
            if reason is None:
                it.on_success(peer, ())
                if better(r, op.best) or (op.best_from is None and r == op.best):
                    op.best, op.best_from = r, peer
                if not it.finished:
                    it.finish()
                    self._arm(now + GET_GRACE_S, 1, op.op_id)
            else:
                self.stats.records_rejected += 1
                it.on_success(peer, nodes)
                op.lacking.append(peer)
        elif isinstance(msg, Peers):
            it.on_success(peer, nodes)
            wall = self.wall_ms(now)
            for p in msg.providers:
                if p.topic != op.target or validate_provider(p, wall) is not None:
                    continue
                cur = op.providers.get(p.node)
                if cur is None or (p.ts, p.leave) > (cur.ts, cur.leave):
                    op.providers[p.node] = p
                    op.provider_depth = max(op.provider_depth, it.depth(peer))
        else:
            it.on_success(peer, nodes)
            if op.kind == "find_value":
                op.lacking.append(peer)
        if op.best_from is not None and it.in_flight == 0:
            self._finish_lookup(op, now)
            return
        self._step_lookup(op, now)

    def _op_deadline(self, op: _Op, now: float) -> None:
        if isinstance(op, _LookupOp):
            self._finish_lookup(op, now)
        elif isinstance(op, _WriteOp):
            self._finish_write(op, now)

    def _finish_lookup(self, op: _LookupOp, now: float) -> None:
        if self._ops.pop(op.op_id, None) is None:
            return
        it = op.it
        assert it is not None
        duration = now - op.started
        self.table.touch_bucket(op.target, now)
        closest = it.closest_succeeded()
        if op.kind == "find_value":
            found = op.best is not None
            hops = it.depth(op.best_from) if op.best_from is not None else 0
            if op.best_from is None and closest:
                hops = it.depth(closest[0])
        elif op.kind == "get_peers":
            found = any(not p.leave for p in op.providers.values())
            hops = op.provider_depth or (it.depth(closest[0]) if closest else 0)
        else:
            found = bool(closest)
            hops = it.depth(closest[0]) if closest else 0
        self.stats.lookup_latencies_s.append(duration)
        self.stats.lookup_hops.append(hops)
        self._events.append(
            LookupDone(op.kind, op.target, hops, duration, found, it.contacted, it.failed)
        )
        if op.kind == "find_value":
            if op.best is not None and op.best_from is not None:
                self._cache_at_lacking(op, now)
            self._complete(
                op,
                GetResult(
                    op.target, op.best, hops, duration, it.contacted, it.failed,
                    local=op.best is not None and op.best_from is None,
                ),
                now,
            )  # fmt: skip
        elif op.kind == "get_peers":
            provs = tuple(p for p in op.providers.values() if not p.leave)
            left = tuple(p.node for p in op.providers.values() if p.leave)
            self._complete(
                op, GetPeersResult(op.target, provs, left, hops, duration, it.contacted), now
            )
        elif op.then is not None:
            self._ops.pop(op.op_id, None)
            self._start_write(op.then, [c for c in closest if c != self.id], now)
        else:
            self._complete(
                op,
                FindNodeResult(op.target, tuple(closest), hops, duration, it.contacted, it.failed),
                now,
            )

    def _cache_at_lacking(self, op: _LookupOp, now: float) -> None:
        """Cache the value at the closest node that answered without it (Kademlia §2.3)."""
        assert op.best is not None
        t = int.from_bytes(op.target, "big")
        lacking = sorted(set(op.lacking), key=lambda p: int.from_bytes(p, "big") ^ t)
        if lacking:
            self._request(lacking[0], Store(self._new_rid(), op.best, True), None, now)

    # == writes ===================================================================================

    def _start_write(self, op: _Op, targets: list[NodeId], now: float) -> None:
        assert isinstance(op, _WriteOp)
        op.targets = targets[: self.config.k]
        n = len(op.targets)
        op.quorum = min(self.config.quorum_w, -(-n // 2))
        for peer in op.targets:
            msg: Request
            if op.record is not None:
                msg = Store(self._new_rid(), op.record, False)
            else:
                assert op.provider is not None
                msg = Announce(self._new_rid(), op.provider)
            self._request(peer, msg, op.op_id, now)
        self._arm(now + self.config.request_timeout_s + STORE_GRACE_S, 1, op.op_id)
        self._check_write(op, now)

    def _write_response(self, op: _WriteOp, peer: NodeId, msg: Message, now: float) -> None:
        op.answered += 1
        if isinstance(msg, StoreAck | AnnounceAck):
            if msg.ok:
                op.acks += 1
            else:
                op.reasons.append(msg.reason)
        self._check_write(op, now)

    def _check_write(self, op: _WriteOp, now: float) -> None:
        if op.done:
            return
        if op.answered >= len(op.targets):
            self._finish_write(op, now)
        elif op.acks >= op.quorum:
            # Quorum reached: the write is durable enough to report; later acks still land on
            # the replicas (they are counted in stats, not waited for).
            self._finish_write(op, now)

    def _finish_write(self, op: _WriteOp, now: float) -> None:
        if op.done:
            return
        op.done = True
        ok = op.acks >= op.quorum
        duration = now - op.started
        if op.record is not None:
            self._complete(
                op,
                StoreResult(
                    op.record.key, ok, op.acks, len(op.targets), op.quorum, duration, op.record,
                    tuple(op.reasons),
                ),
                now,
            )  # fmt: skip
        else:
            assert op.provider is not None
            self._complete(
                op,
                AnnounceResult(
                    op.provider.topic, ok, op.acks, len(op.targets), op.quorum, op.provider.leave,
                    duration,
                ),
                now,
            )  # fmt: skip

    # == liveness =================================================================================

    def _ping_done(self, op: _PingOp, ok: bool, now: float) -> None:
        self._pinging.discard(op.peer)
        if op.purpose == "user":
            self._complete(op, PingResult(op.peer, ok, now - op.started), now)
            return
        self._ops.pop(op.op_id, None)
        if ok:
            self.table.update(op.peer, now)
            return
        if self.table.remove(op.peer):
            self._events.append(ContactRemoved(op.peer, "ping timeout"))
        if op.peer in self.connected:
            self._events.append(PeerUnresponsive(op.peer))

    def _liveness(self, now: float) -> None:
        idle = now - self.config.ping_idle_s
        for peer in list(self.connected):
            if peer not in self._pinging and self.last_heard.get(peer, now) <= idle:
                self._ping(peer, now, purpose="liveness")

    # == refresh ==================================================================================

    def _queue_stale_buckets(self, now: float) -> None:
        stale_before = now - self.config.refresh_interval_s
        deepest = self.table.deepest_bucket()
        if deepest < 0:
            return
        queued = 0
        for i in range(min(deepest + 1, ID_BITS)):
            if i not in self._refresh_queue and self.table.bucket_last_touched(i) <= stale_before:
                self._refresh_queue.append(i)
                queued += 1
        if queued:
            self._events.append(MaintenanceRefresh(queued))

    def _start_refresh(self, now: float) -> None:
        index = self._refresh_queue.popleft()
        if index in self._join_refresh:
            self._join_refresh.discard(index)
            if self.table.bucket_full(index):
                # Filled meanwhile by nodes that contacted us: the join refresh has nothing
                # left to find there (periodic refreshes of stale buckets still run).
                self._next_refresh_start = now
                return
        target = random_id_in_bucket(self.id, index, self.rng)
        op = self._start_lookup("find_node", target, now, start=False)
        op.internal = True
        self._refresh_running = True
        self._refresh_table_size = len(self.table)
        self._refresh_ops.add(op.op_id)
        self._step_lookup(op, now)

    # == republish and repair =====================================================================

    def _republish_due(self, now: float) -> None:
        if now < self._next_republish:
            return  # (a superseded key can leave it early: then we merely look once more)
        due = [key for key, (_, at) in self.authored.items() if at <= now]
        count = 0
        for key in due:
            record, _ = self.authored[key]
            held = self.records.get(key, now)
            if held is not None and held != record and better(held, record):
                del self.authored[key]  # superseded by a newer write: stop republishing ours
                continue
            self._store_record(record, now, internal=True)
            count += 1
        self._next_republish = min((at for _, at in self.authored.values()), default=math.inf)
        if count:
            self._events.append(MaintenanceRepublish(count))

    def _start_repair(self, now: float) -> None:
        if self._repair is not None:
            return
        keys = [e.record.key for e in self.records.primary_entries(now)]
        self.rng.shuffle(keys)
        self._repair = _RepairRound(keys)
        self._next_repair_tick = now

    def _repair_tick(self, now: float) -> None:
        rnd = self._repair
        assert rnd is not None
        self._next_repair_tick = now + REPAIR_TICK_S
        batch, rnd.keys = rnd.keys[:REPAIR_BATCH], rnd.keys[REPAIR_BATCH:]
        for key in batch:
            entry = self.records.entry(key, now)
            if entry is None or entry.cached:
                continue
            rnd.checked += 1
            k = self.config.k
            candidates = self.table.closest(key, 2 * k, exclude=self.id)
            rnd.spare[key] = candidates[k:]
            for peer in candidates[:k]:
                self._repair_ask(rnd, peer, entry.record, now)
        self._repair_outstanding_done(now, 0)

    def _repair_ask(self, rnd: _RepairRound, peer: NodeId, r: Record, now: float) -> None:
        rnd.outstanding += 1
        self._request(peer, HasValue(self._new_rid(), r.key, r.ts, r.pub), None, now)

    def _repair_failed(self, request: HasValue, now: float) -> None:
        """A replica holder did not answer: ask the next-closest contact instead."""
        rnd = self._repair
        entry = self.records.entry(request.key, now)
        if rnd is not None and entry is not None and not entry.cached:
            spare = rnd.spare.get(request.key)
            if spare:
                self._repair_ask(rnd, spare.pop(0), entry.record, now)
        self._repair_outstanding_done(now)

    def _repair_outstanding_done(self, now: float, answered: int = 1) -> None:
        rnd = self._repair
        if rnd is None:
            return
        rnd.outstanding -= answered
        if not rnd.keys and rnd.outstanding <= 0:
            self._events.append(MaintenanceRepair(rnd.checked, rnd.restored))
            self._repair = None

    def _repair_ack(self, p: _Pending, msg: HasValueAck, now: float) -> None:
        if not isinstance(p.request, HasValue):
            return
        entry = self.records.entry(p.request.key, now)
        if not msg.has and entry is not None and not entry.cached:
            # (an expired entry is gone from storage: it is never re-replicated)
            if self._repair is not None:
                self._repair.restored += 1
            self._request(p.peer, Store(self._new_rid(), entry.record, False), None, now)
        self._repair_outstanding_done(now)

    # == topics ===================================================================================

    def _topics_due(self, now: float) -> None:
        for jt in list(self.joined.values()):
            if jt.announcing and now >= jt.next_announce:
                jt.next_announce = now + self.config.reannounce_interval_s
                provider = sign_provider(
                    self.identity, jt.topic, self.wall_ms(now), jt.port or 0, jt.meta
                )
                self._announce_provider(provider, now, internal=True)
            if not jt.discovering and now >= jt.next_discovery:
                jt.discovering = True
                op = self._start_lookup("get_peers", jt.topic, now, start=False)
                op.internal = True
                self._discovery_ops[op.op_id] = jt.topic
                self._step_lookup(op, now)

    def _discovery_done(self, topic: bytes, result: GetPeersResult, now: float) -> None:
        jt = self.joined.get(topic)
        if jt is None:
            return
        jt.discovering = False
        jt.next_discovery = now + self.config.discovery_interval_s
        found = {p.node: p for p in result.providers if p.node != self.id}
        for node_id, p in found.items():
            cur = jt.known.get(node_id)
            jt.known[node_id] = p
            if cur is None:
                self._events.append(TopicPeerFound(topic, p))
        wall = self.wall_ms(now)
        ttl_ms = int(self.config.provider_ttl_s * 1000)
        for node_id in list(jt.known):
            if node_id in found:
                continue
            if node_id in result.left:
                del jt.known[node_id]
                self._events.append(TopicPeerLost(topic, node_id, "left"))
            elif jt.known[node_id].ts + ttl_ms <= wall:
                del jt.known[node_id]
                self._events.append(TopicPeerLost(topic, node_id, "expired"))

    # == introspection ============================================================================

    def pending_requests(self) -> int:
        return len(self._pending)

    def active_ops(self) -> int:
        return len(self._ops)
