"""Typed operation state: one class per kind of operation, each a small state machine.

An operation is what a command (``find_node``, ``get``, ``get_peers``, ``store``, ``announce``,
``ping``) or a maintenance task starts; it ends with one ``*Result``. The classes here hold the
state and the pure transitions (which request to send, what an answer means, what the result
is); ``DhtProtocol`` owns the table of live operations and does the sending.

- ``LookupOp``: an iterative lookup over ``lookup.LookupIter``, of kind ``OpKind``. A FIND_VALUE
  keeps the best valid record seen (``records.better``) and the peers that answered without it
  (the cache target); a GET_PEERS merges provider records per announcer. A lookup can carry a
  write phase (``then``) that starts on its k closest when it finishes. The lookup of a record
  write asks with FIND_NODE_STORE, which carries the record: a peer that counts itself among the
  k closest stores it at once and says so in its NODES_ACK (``WriteOp.early``).
- ``WriteOp``: the one write path of ``store`` and ``announce`` — send the payload to the
  closest that do not hold it yet from the lookup, count acks (early ones of the k closest
  included), succeed at ``min(W, ceil(n/2))``.
- ``PingOp``: one PING, for a user or for maintenance.

Every operation has a ``Purpose`` (who started it and who hears of its end).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from node.config import Config
from node.events import (
    AnnounceResult,
    Event,
    FindNodeResult,
    GetPeersResult,
    GetResult,
    LookupDone,
    OpResult,
    StoreResult,
)
from node.ids import NodeId, as_int
from node.lookup import LookupIter
from node.messages import (
    NOT_CLOSEST,
    Announce,
    FindNode,
    FindNodeStore,
    FindValue,
    GetPeers,
    Nodes,
    NodesAck,
    Peers,
    Put,
    RecordValue,
    Refused,
    Request,
    Response,
    Store,
    Value,
    WriteAck,
)
from node.owned import Draft
from node.records import (
    ProviderRecord,
    Record,
    RecordKind,
    better,
    validate_provider,
    validate_record,
)

TIMEOUT_REASON = "timeout"


class OpKind(enum.StrEnum):
    """The kind of a lookup (its value is the name events and the control plane show)."""

    FIND_NODE = "find_node"
    FIND_VALUE = "find_value"
    GET_PEERS = "get_peers"


class Purpose(enum.Enum):
    """Why an operation runs. Only USER and JOIN operations report an ``OpCompleted``."""

    USER = "user"  # a command
    JOIN = "join"  # join()'s self-lookup: reported, then the join refreshes are queued
    REFRESH = "refresh"  # a bucket refresh lookup
    DISCOVERY = "discovery"  # a joined topic's periodic GET_PEERS
    WRITE = "write"  # the lookup that finds a write's replicas
    REPUBLISH = "republish"  # an originator's republish or re-announce
    LIVENESS = "liveness"  # a ping of an idle connected peer: evicted when it fails
    BUCKET = "bucket"  # a ping of a full bucket's oldest contact: replaced when it fails
    LISTEN = "listen"  # the lookup that finds the holders a listener registers with

    @property
    def internal(self) -> bool:
        return self not in (Purpose.USER, Purpose.JOIN)


class Answer(enum.Enum):
    """What one response meant to a lookup."""

    PROGRESS = enum.auto()  # closer peers (or nothing new)
    VALUE_FOUND = enum.auto()  # the first valid record: start the grace period
    REJECTED = enum.auto()  # an invalid record (counted against the sender)


@dataclass(slots=True, kw_only=True)
class Op:
    op_id: int
    started: float
    purpose: Purpose = Purpose.USER
    reports_as: int | None = None
    """The operation id the caller knows, when this op continues another (a redone write)."""

    @property
    def caller_id(self) -> int:
        return self.op_id if self.reports_as is None else self.reports_as


@dataclass(slots=True, kw_only=True)
class LookupOp(Op):
    kind: OpKind
    target: bytes
    it: LookupIter
    deadline: float
    best: Record | None = None
    best_from: NodeId | None = None  # None with a best record: it is our own copy
    lacking: list[NodeId] = field(default_factory=list)
    providers: dict[NodeId, ProviderRecord] = field(default_factory=dict)
    provider_depth: int = 0
    then: WriteOp | None = None  # a write phase that runs on the lookup's result
    collect: bool = False  # a write's FIND_VALUE: visit the k closest, keep the best value seen

    def request(self, rid: int) -> Request:
        if self.kind is OpKind.FIND_VALUE:
            return FindValue(rid, self.target)
        if self.kind is OpKind.GET_PEERS:
            return GetPeers(rid, self.target)
        payload = self.then.payload if self.then is not None else None
        if isinstance(payload, Record) and payload.kind is RecordKind.OPEN:
            return FindNodeStore(rid, NodeId(self.target), payload)
        return FindNode(rid, NodeId(self.target))

    @property
    def done(self) -> bool:
        """Nothing left to ask (after a value was found, in-flight answers may still improve it)."""
        return self.it.finished and (self.best_from is None or self.it.in_flight == 0)

    @property
    def settled(self) -> bool:
        """A value was found and every answer in flight has arrived (never when collecting)."""
        return not self.collect and self.best_from is not None and self.it.in_flight == 0

    def on_response(self, peer: NodeId, msg: Response, wall_ms: int, config: Config) -> Answer:
        it = self.it
        nodes = msg.nodes if isinstance(msg, Nodes | Value | Peers | NodesAck) else ()
        if isinstance(msg, NodesAck) and self.then is not None:
            self.then.early[peer] = (msg.ok, msg.reason)
        if isinstance(msg, Value | RecordValue):
            r = msg.record
            reason = None if r.key == self.target else "record for another key"
            reason = reason or validate_record(
                r, wall_ms, max_data_bytes=config.max_record_data_bytes,
                max_future_skew_ms=config.max_future_skew_ms,
            )  # fmt: skip
            if reason is not None:
                it.on_success(peer, nodes)
                self.lacking.append(peer)
                return Answer.REJECTED
            it.on_success(peer, nodes if self.collect else ())
            if better(r, self.best) or (self.best_from is None and r == self.best):
                self.best, self.best_from = r, peer
            if self.collect:
                return Answer.PROGRESS
            if it.finished:
                return Answer.PROGRESS
            it.finish()
            return Answer.VALUE_FOUND
        if isinstance(msg, Peers):
            it.on_success(peer, nodes)
            for p in msg.providers:
                if p.topic != self.target or validate_provider(p, wall_ms) is not None:
                    continue
                cur = self.providers.get(p.node)
                if cur is None or (p.ts, p.leave) > (cur.ts, cur.leave):
                    self.providers[p.node] = p
                    self.provider_depth = max(self.provider_depth, it.depth(peer))
            return Answer.PROGRESS
        it.on_success(peer, nodes)
        if self.kind is OpKind.FIND_VALUE:
            self.lacking.append(peer)
        return Answer.PROGRESS

    def summary(self, now: float) -> LookupDone:
        it = self.it
        closest = it.closest_succeeded()
        if self.kind is OpKind.FIND_VALUE:
            found = self.best is not None
            hops = it.depth(self.best_from) if self.best_from is not None else 0
            if self.best_from is None and closest:
                hops = it.depth(closest[0])
        elif self.kind is OpKind.GET_PEERS:
            found = any(not p.leave for p in self.providers.values())
            hops = self.provider_depth or (it.depth(closest[0]) if closest else 0)
        else:
            found = bool(closest)
            hops = it.depth(closest[0]) if closest else 0
        duration = now - self.started
        return LookupDone(self.kind, self.target, hops, duration, found, it.contacted, it.failed)

    def result(self, done: LookupDone) -> OpResult:
        it = self.it
        if self.kind is OpKind.FIND_VALUE:
            local = self.best is not None and self.best_from is None
            return GetResult(
                self.target, self.best, done.hops, done.duration_s, it.contacted, it.failed, local
            )
        if self.kind is OpKind.GET_PEERS:
            provs = tuple(p for p in self.providers.values() if not p.leave)
            left = tuple(p.node for p in self.providers.values() if p.leave)
            return GetPeersResult(
                self.target, provs, left, done.hops, done.duration_s, it.contacted
            )
        closest = tuple(it.closest_succeeded())
        return FindNodeResult(
            self.target, closest, done.hops, done.duration_s, it.contacted, it.failed
        )

    def cache_target(self) -> NodeId | None:
        """Where a found value is cached: the closest peer that answered without it."""
        if self.collect or self.best is None or self.best_from is None or not self.lacking:
            return None
        t = as_int(self.target)
        return min(set(self.lacking), key=lambda p: as_int(p) ^ t)


@dataclass(slots=True, kw_only=True)
class WriteOp(Op):
    """The write phase of a store or put (``payload`` a ``Record``) or an announce (a provider).
    With a ``draft``, ``payload`` is only set (signed) when the lookup ends (``owned.finalize``)."""

    payload: Record | ProviderRecord | None
    draft: Draft | None = None
    targets: list[NodeId] = field(default_factory=list)
    acks: int = 0
    answered: int = 0
    quorum: int = 0
    reasons: list[str] = field(default_factory=list)
    done: bool = False
    early: dict[NodeId, tuple[bool, str]] = field(default_factory=dict)
    """Store outcomes that came with the lookup's NODES_ACKs: peer → (ok, reason)."""
    retry: Draft | None = None
    """An open store signed before its lookup (so the lookup could carry it): redone once as a
    collecting write, signed above what the holders have, if one of them holds a newer record."""

    def begin(self, closest: list[NodeId], config: Config) -> list[NodeId]:
        """Fix the targets (the k closest); the ones that still need a STORE. A target that
        answered the lookup's FIND_NODE_STORE already counts as answered (acked or refused)."""
        self.targets = closest[: config.k]
        self.quorum = min(config.quorum_w, -(-len(self.targets) // 2))
        need = []
        for peer in self.targets:
            outcome = self.early.get(peer)
            if outcome is None or outcome == (False, NOT_CLOSEST):
                need.append(peer)
            else:
                self._count(*outcome)
        return need

    def request(self, rid: int) -> Request:
        p = self.payload
        if isinstance(p, Record):
            return record_request(rid, p, False, self.draft.cas if self.draft else None)
        assert p is not None, "a draft is signed before its write phase starts"
        return Announce(rid, p)

    def _count(self, ok: bool, reason: str) -> None:
        self.answered += 1
        if ok:
            self.acks += 1
        else:
            self.reasons.append(reason)

    def on_answer(self, msg: Response) -> None:
        if isinstance(msg, WriteAck):
            self._count(msg.ok, msg.reason)
        elif isinstance(msg, Refused):
            self._count(False, msg.reason)
        else:
            self.answered += 1

    def on_failure(self) -> None:
        self.answered += 1
        self.reasons.append(TIMEOUT_REASON)

    @property
    def settled(self) -> bool:
        """Every target answered, or the quorum acked (later acks still land on replicas)."""
        return self.answered >= len(self.targets) or self.acks >= self.quorum

    def result(self, now: float) -> StoreResult | AnnounceResult:
        ok = self.acks >= self.quorum
        duration = now - self.started
        p = self.payload
        assert p is not None, "a draft is signed before its write phase starts"
        if isinstance(p, Record):
            n = len(self.targets)
            reasons = tuple(self.reasons)
            return StoreResult(p.key, ok, self.acks, n, self.quorum, duration, p, reasons)
        n = len(self.targets)
        return AnnounceResult(p.topic, ok, self.acks, n, self.quorum, p.leave, duration)


def record_request(rid: int, r: Record, cached: bool, cas: int | None = None) -> Store | Put:
    """The request that writes ``r``: STORE for an open record, PUT for an owned one."""
    if r.kind is RecordKind.OPEN:
        return Store(rid, r, cached)
    return Put(rid, r, cas, cached)


@dataclass(slots=True, kw_only=True)
class PingOp(Op):
    peer: NodeId


class OpTable:
    """The live operations by id; ids count up from 1 and are never reused."""

    def __init__(self) -> None:
        self._ops: dict[int, Op] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._ops)

    def __contains__(self, op_id: int) -> bool:
        return op_id in self._ops

    def new_id(self) -> int:
        op_id = self._next
        self._next += 1
        return op_id

    def add(self, op: Op) -> None:
        self._ops[op.op_id] = op

    def get(self, op_id: int | None) -> Op | None:
        return self._ops.get(op_id) if op_id is not None else None

    def pop(self, op_id: int) -> Op | None:
        return self._ops.pop(op_id, None)


class OpHost(Protocol):
    """What maintenance and topics need from the node: start operations, send, report."""

    def wall_ms(self, now: float) -> int: ...

    def lookup(
        self, kind: OpKind, target: bytes, now: float, purpose: Purpose, width: int | None = None
    ) -> int: ...

    def write(
        self, payload: Record | ProviderRecord | Draft, now: float, purpose: Purpose
    ) -> int: ...

    def request(self, peer: NodeId, msg: Request, now: float) -> None:
        """Send a request that belongs to no operation (its answer goes to maintenance)."""

    def new_rid(self) -> int: ...

    def emit(self, event: Event) -> None: ...
