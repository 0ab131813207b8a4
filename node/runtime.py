"""The asyncio driver of one node: the sans-IO ``DhtProtocol`` wired to a transport.

Theory of operation:
- ``DhtProtocol`` holds all DHT state. This module feeds it inputs (messages from authenticated
  links, link changes, timers, operations) with ``now = loop.time()`` and then *pumps* it: queued
  messages are encoded and handed to the connection manager, events are dispatched, and the one
  timer (``loop.call_at``) is re-armed to ``get_timer()``. Nothing here sleeps in a polling loop.
- Connections (dialing, glare, SDP relay, HELLO, the cap) are ``node.connections``; bootstrap is
  ``node.bootstrap``; the signaling client is injected (``node.signaling_port``). The runtime
  implements the connection manager's ``CoreHooks`` and nothing else of it.
- Events that are ``Notice``s (``node.events``) go to the listeners given to ``subscribe``; the
  runtime does not know who listens (the control plane does, in ``peer/``).
- Operations are typed: they take node IDs and strings, return the core's result dataclasses or
  the snapshots of ``node.snapshots``, and raise ``node.errors`` types — ``BadArgument``
  (``TooLarge``) for an argument the node refuses, ``OperationError(Failure.X, ...)`` for an
  operation that could not complete. Mapping them to a wire protocol is the caller's business.
- Liveness: over WebRTC it is the transport's (``provides_liveness``: an SCTP HEARTBEAT on silent
  links; a dead peer's link ends with ``LIVENESS_LOST`` → ``core.peer_lost`` evicts it); over
  the memory transport it is the protocol's (PING idle peers, ``PeerUnresponsive`` → the link is
  closed). Either notices a SIGKILLed peer in seconds instead of aiortc's ~30 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from node import codec, events, snapshots
from node.bootstrap import Bootstrapper
from node.config import MAX_PROVIDER_META_BYTES, Config
from node.connections import ConnectionLimits, ConnectionManager
from node.errors import BadArgument, Failure, OperationError
from node.events import (
    AnnounceResult,
    FindNodeResult,
    GetPeersResult,
    GetResult,
    NodeStats,
    Notice,
    OpResult,
    PingResult,
    StoreResult,
)
from node.identity import Identity
from node.ids import NodeId, key_id, short_id
from node.operations import Purpose
from node.persist import Persister, start_persistence, synced
from node.protocol import DhtProtocol
from node.records import MAX_SALT_BYTES, Record
from node.signaling_port import SignalingFactory, SignalingHandlers, SignalingPort
from node.snapshots import PeerInfo, PingOutcome, RoutingSnapshot, TopicInfo
from node.tasks import TaskSet
from node.transport.base import Transport

log = logging.getLogger("node.runtime")

STOP_DELAY_S = 0.05
LINK_SWEEP_MIN_S = 1.0
BYE_FLUSH_S = 0.2  # after BYE, before the links close: time for the message to leave
MAX_PUMP_ROUNDS = 1000

R = TypeVar("R", bound=OpResult)
NoticeListener = Callable[[Notice], None]


class TooLarge(BadArgument):
    """An argument is above the node's size limit (a value, provider metadata)."""


@dataclass(frozen=True, slots=True)
class NodeSettings(ConnectionLimits):
    """The connection limits (``node.connections``) and the runtime's own settings."""

    bootstrap_peers: int = 8
    auto_bootstrap: bool = True
    """Run the bootstrap loop (False: only explicit dials connect; for tests)."""
    stats_interval_s: float = 5.0
    op_timeout_s: float = 30.0


class _Hooks:
    """The runtime as the connection manager sees it (``node.connections.CoreHooks``)."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self._rt = runtime

    def link_up(self, peer: NodeId) -> None:
        self._rt.core.peer_connected(peer, self._rt.now)

    def _live(self) -> DhtProtocol | None:
        return None if self._rt.stopped else self._rt.proto

    def link_down(self, peer: NodeId) -> None:
        self._gone(peer, lost=False)

    def link_lost(self, peer: NodeId) -> None:
        self._gone(peer, lost=True)

    def _gone(self, peer: NodeId, lost: bool) -> None:
        core = self._live()
        if core is not None:
            if lost:
                core.peer_lost(peer, self._rt.now)
            else:
                core.peer_disconnected(peer, self._rt.now)
            self._rt.pump()
            if not self._rt.connections and self._rt.bootstrap is not None:
                self._rt.bootstrap.wake()

    def unreachable(self, peer: NodeId) -> None:
        core = self._live()
        if core is not None:
            core.delivery_failed(peer, self._rt.now)
            self._rt.pump()

    def received(self, peer: NodeId, data: bytes) -> None:
        self._rt.core.receive(peer, data, self._rt.now)
        self._rt.pump()

    def relay_signal(self, peer: NodeId, payload: bytes, via: NodeId | None) -> bool:
        core = self._rt.core
        if not core.connected or not core.send_signal(peer, payload, self._rt.now, via):
            return False
        self._rt.pump()
        return True

    def needed(self, peer: NodeId) -> bool:
        core = self._live()
        return core is not None and core.awaiting(peer)

    def notify(self, notice: Notice) -> None:
        self._rt.notify(notice)

    def pump(self) -> None:
        self._rt.pump()


class NodeRuntime:
    """One node. ``await start()``, then use the operations; ``await stop()`` to leave."""

    def __init__(
        self,
        identity: Identity,
        transport: Transport,
        config: Config | None = None,
        settings: NodeSettings | None = None,
        rng: random.Random | None = None,
        *,
        signaling: SignalingFactory | None = None,
        persister: Persister | None = None,
    ) -> None:
        self.identity = identity
        self.node_id: NodeId = identity.node_id
        self.transport = transport
        # A transport that probes idle links itself replaces the core's liveness PINGs.
        self.config = replace(
            config or Config(), transport_liveness=bool(transport.provides_liveness)
        )
        self.settings = settings or NodeSettings()
        self._rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
        self._signaling_factory = signaling
        self.persister = persister
        """SQLite persistence (``node.persist``); None: the node forgets everything on exit."""
        self.proto: DhtProtocol | None = None
        self.signaling: SignalingPort | None = None
        self.bootstrap: Bootstrapper | None = None
        self.connections = ConnectionManager(identity, transport, _Hooks(self), self.settings)
        self.started_wall = time.time()
        self._listeners: list[NoticeListener] = []
        self._ops: dict[int, asyncio.Future[OpResult]] = {}
        self._key_names: dict[bytes, str] = {}
        self._topic_names: dict[bytes, str] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks = TaskSet("runtime")
        self._stop_task: asyncio.Task[None] | None = None
        self._pumping = False
        self._stopped = asyncio.Event()
        self._leaving = False

    # == lifecycle ================================================================================

    @property
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    @property
    def core(self) -> DhtProtocol:
        """The protocol core (only after ``start()``)."""
        if self.proto is None:
            raise RuntimeError("the node is not started")
        return self.proto

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    async def start(self) -> None:
        now = self.now
        self.proto = DhtProtocol(
            self.identity,
            self.config,
            random.Random(self._rng.getrandbits(64)),
            now,
            wall_offset_s=time.time() - now,
        )
        if self.persister is not None:
            saved = await start_persistence(self.persister, self.proto, lambda: self.now, self.pump)
            self._tasks.spawn(self._redial(saved[: 2 * self.settings.bootstrap_peers]))
        if self._signaling_factory is not None:
            sig = self._signaling_factory(
                SignalingHandlers(
                    on_offer=self.connections.on_offer,
                    on_answer=self.connections.on_answer,
                    on_registered=self._on_registered,
                    on_error=self._on_signaling_error,
                )
            )
            self.signaling = self.connections.signaling = sig
            self.bootstrap = Bootstrapper(
                sig,
                dial=self.dial,
                alone=lambda: not self.connections or not self.core.table,
                join=self._join,
                peers_wanted=self.settings.bootstrap_peers,
                covers=lambda peer: self.core.table.covers(peer),
            )
            await sig.start()
            if self.settings.auto_bootstrap:
                self._tasks.spawn(self.bootstrap.run())
        self._tasks.spawn(self._stats_loop())
        if self.settings.link_idle_s > 0:
            self._tasks.spawn(self._link_sweep_loop())
        self.pump()

    async def stop(self) -> None:
        if self._leaving:
            await self._stopped.wait()
            return
        self._leaving = True
        await self._say_bye()
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        await self._tasks.cancel_all()
        await self.connections.close_all()
        if self.persister is not None:
            await self.persister.close()
        if self.signaling is not None:
            await self.signaling.close()
        await self.transport.close()
        for fut in self._ops.values():
            if not fut.done():
                fut.cancel()

    async def _say_bye(self) -> None:
        """Leaving on purpose: BYE to every connected peer, so they drop us at once (instead of
        after liveness timeouts), then a moment for the messages to leave before the links
        close (closing the peer connection aborts SCTP, dropping what is still queued)."""
        if self.proto is None or not self.connections:
            return
        self.connections.drain()
        if self.proto.leave():
            self.pump()
            await asyncio.sleep(BYE_FLUSH_S)

    def request_stop(self) -> None:
        """Stop shortly (lets the caller answer first, e.g. a ``shutdown`` command)."""
        loop = asyncio.get_running_loop()
        loop.call_later(STOP_DELAY_S, self._spawn_stop)

    def _spawn_stop(self) -> None:
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self.stop())

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _redial(self, contacts: list[NodeId]) -> None:
        """Reconnect to the contacts a previous run saved (the signaling server may be gone)."""
        async with asyncio.TaskGroup() as tg:
            for peer in contacts:
                tg.create_task(self.dial(peer))

    def _on_registered(self) -> None:
        if self.bootstrap is not None:
            self.bootstrap.wake()

    @staticmethod
    def _on_signaling_error(code: str, message: str, cid: str | None) -> None:
        log.debug("signaling error %s: %s (cid %s)", code, message, cid)

    def _join(self) -> None:
        self.core.join(self.now)
        self.pump()

    # == the pump =================================================================================

    def pump(self) -> None:
        """Move the protocol's outputs to the world. Re-entrant calls are folded into one."""
        proto = self.proto
        if proto is None or self._pumping or self._stopped.is_set():
            return
        self._pumping = True
        try:
            for _ in range(MAX_PUMP_ROUNDS):
                outgoing = proto.messages_to_send()
                had_events = False
                while (ev := proto.next_event()) is not None:
                    had_events = True
                    self._on_event(ev)
                for out in outgoing:
                    self._deliver(out.peer, out.message, out.via)
                if not outgoing and not had_events:
                    break
        finally:
            self._pumping = False
        if self.persister is not None:
            self.persister.kick()
        self._arm_timer()

    def _arm_timer(self) -> None:
        t = self.core.get_timer()
        if t == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = t
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(t, self._on_timer) if t is not None else None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self.now)
        self.pump()

    def _deliver(self, peer: NodeId, message: Any, via: NodeId | None) -> None:
        try:
            data = codec.encode(message)
        except codec.EncodeError:
            log.exception("refusing to send an invalid message to %s", short_id(peer))
            return
        self.connections.send(peer, data, via)

    # == events ===================================================================================

    def subscribe(self, listener: NoticeListener) -> None:
        """Call ``listener`` with every notice the node publishes (synchronously; keep it short)."""
        self._listeners.append(listener)

    def notify(self, notice: Notice) -> None:
        for listener in self._listeners:
            try:
                listener(notice)
            except Exception:
                log.exception("notice listener failed on %s", notice.TOPIC)

    def _on_event(self, ev: events.Event) -> None:
        if isinstance(ev, events.PeerBanned):
            log.warning("peer %s banned for %g s: %s", short_id(ev.peer), ev.for_s, ev.reason)
            self.connections.ban(ev.peer, ev.for_s)
        if isinstance(ev, Notice):
            self.notify(ev)
            return
        match ev:
            case events.OpCompleted():
                fut = self._ops.pop(ev.op_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev.result)
            case events.PeerUnresponsive():
                self.connections.close(ev.peer, "unresponsive")
            case events.PeerLeft():
                self.connections.close(ev.peer, "left")
            case events.PeerMisbehaved():
                log.warning("peer %s sent a bad message: %s", short_id(ev.peer), ev.reason)
                if ev.count >= self.config.malformed_disconnect_threshold:
                    self.connections.close(ev.peer, "misbehaving")
            case events.SignalReceived():
                self.connections.on_signal(ev.source, ev.payload)
            case _:
                pass

    # == names (node.events.Names) ================================================================

    def key_name(self, key: bytes) -> str | None:
        return self._key_names.get(key)

    def topic_name(self, topic: bytes) -> str | None:
        return self._topic_names.get(topic)

    def _topic(self, topic: str) -> bytes:
        tid = key_id(topic)
        self._topic_names[tid] = topic
        return tid

    async def _link_sweep_loop(self) -> None:
        interval_s = max(LINK_SWEEP_MIN_S, self.settings.link_idle_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            self.connections.sweep()

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval_s)
            self.notify(self.stats())

    # == operations ===============================================================================

    async def _op(self, start: Callable[[DhtProtocol, float], int], kind: type[R]) -> R:
        return await self._wait_op(start(self.core, self.now), kind)

    async def _wait_op(self, op_id: int, kind: type[R]) -> R:
        fut: asyncio.Future[OpResult] = asyncio.get_running_loop().create_future()
        self._ops[op_id] = fut
        self.pump()
        try:
            async with asyncio.timeout(self.settings.op_timeout_s):
                result = await fut
        except TimeoutError:
            self._ops.pop(op_id, None)
            raise OperationError(Failure.TIMEOUT, "operation timed out") from None
        if not isinstance(result, kind):
            raise TypeError(f"operation {op_id} ended with {type(result).__name__}")
        return result

    async def dial(self, peer: NodeId) -> bool:
        """Connect to ``peer`` (no-op when connected); True once an authenticated link is up."""
        return await self.connections.dial(peer)

    def _not_self(self, peer: NodeId) -> None:
        if peer == self.node_id:
            raise BadArgument("that is this node's own id")

    async def connect(self, peer: NodeId) -> float:
        """Connect to ``peer``; the seconds it took. ``OperationError(UNREACHABLE)`` on failure."""
        self._not_self(peer)
        started = self.now
        if not await self.dial(peer):
            reason = self.connections.failure(peer)
            detail = f": {reason}" if reason else ""
            raise OperationError(Failure.UNREACHABLE, f"cannot connect to {short_id(peer)}{detail}")
        return self.now - started

    def disconnect(self, peer: NodeId) -> bool:
        """Close the link to ``peer`` (the contact stays); False when there was none."""
        return self.connections.close(peer, "closed by request")

    async def ping(self, peer: NodeId) -> PingOutcome:
        """PING ``peer``, connecting first when needed."""
        started = self.now
        await self.connect(peer)
        r = await self._op(lambda p, now: p.ping(peer, now), PingResult)
        if not r.ok:
            raise OperationError(Failure.TIMEOUT, f"no PONG from {short_id(peer)}")
        return PingOutcome(peer, r.rtt_s, self.now - started)

    async def find_node(self, target: NodeId) -> FindNodeResult:
        return await self._op(lambda p, now: p.find_node(target, now), FindNodeResult)

    def _check_value(self, value: bytes) -> None:
        limit = self.config.max_record_data_bytes
        if len(value) > limit:
            raise TooLarge(f"value of {len(value)} bytes exceeds {limit}")

    async def store_value(self, key: str, value: bytes) -> StoreResult:
        """Store on the k closest; the result says whether the quorum was met."""
        kid = key_id(key)
        self._key_names[kid] = key
        return await self.store_at(kid, value)

    async def store_at(self, address: bytes, value: bytes) -> StoreResult:
        """An open-namespace store under a raw 32-byte DHT key."""
        self._check_value(value)
        return await self._durable(lambda p, now: p.store(address, value, now))

    async def put_mutable(
        self, name: bytes, value: bytes, seq: int | None, cas: int | None
    ) -> StoreResult:
        """Write our mutable record ``name`` (node.owned); its address is in the result."""
        self._check_value(value)
        if len(name) > MAX_SALT_BYTES:
            raise BadArgument(f"name of {len(name)} bytes exceeds {MAX_SALT_BYTES}")
        for what, n in (("seq", seq), ("cas", cas)):
            if n is not None and not 0 <= n < 1 << 64:
                raise BadArgument(f"{what} must be in 0..2^64-1")
        return await self._durable(lambda p, now: p.put_mutable(name, value, now, seq, cas))

    async def put_immutable(self, value: bytes) -> StoreResult:
        self._check_value(value)
        return await self._durable(lambda p, now: p.put_immutable(value, now))

    async def _durable(self, start: Callable[[DhtProtocol, float], int]) -> StoreResult:
        """Run a write; with persistence on, our own copy is on disk before we answer."""
        result = await self._op(start, StoreResult)
        if self.persister is not None:
            await synced(self.persister, self.core)
        return result

    async def write_record(self, record: Record) -> StoreResult:
        """Send an already-signed record to the k closest as it is (the republish path; tests
        play a rogue with it: the holders, not this node, decide what is valid)."""
        start = lambda p, now: p.write(record, now, Purpose.USER)  # noqa: E731
        return await self._op(start, StoreResult)

    async def get_value(self, key: str) -> GetResult:
        return await self.get_address(key_id(key))

    async def get_address(self, address: bytes) -> GetResult:
        """The best record at a raw DHT key (any kind), verified."""
        return await self._op(lambda p, now: p.get(address, now), GetResult)

    @staticmethod
    def _check_provider(port: int | None, meta: bytes) -> None:
        if len(meta) > MAX_PROVIDER_META_BYTES:
            raise TooLarge(f"metadata of {len(meta)} bytes exceeds {MAX_PROVIDER_META_BYTES} bytes")
        if port is not None and not 1 <= port <= 65535:
            raise BadArgument("port must be in 1..65535")

    async def announce(self, topic: str, port: int | None, meta: bytes) -> AnnounceResult:
        """Announce under ``topic`` now and keep re-announcing (``meta``: JSON bytes or empty)."""
        self._check_provider(port, meta)
        tid = self._topic(topic)
        r = await self._op(lambda p, now: p.announce(tid, port, meta, now), AnnounceResult)
        self.core.join_topic(tid, port if port is not None else 0, meta, self.now, False)
        self.pump()
        return r

    async def unannounce(self, topic: str) -> bool:
        """Leave ``topic`` (a leave tombstone when announcing); True when the leave was stored."""
        op_id = self.core.leave_topic(key_id(topic), self.now)
        left = False
        if op_id is not None:
            left = (await self._wait_op(op_id, AnnounceResult)).ok
        self.pump()
        return left

    async def lookup_topic(self, topic: str) -> GetPeersResult:
        tid = self._topic(topic)
        return await self._op(lambda p, now: p.get_peers(tid, now), GetPeersResult)

    def listen(self, key: str) -> bool:
        """Report every new version of ``key`` (``record.updated``); False: already listening."""
        kid = key_id(key)
        self._key_names[kid] = key
        new = self.core.listen(kid, self.now)
        self.pump()
        return new

    def unlisten(self, key: str) -> bool:
        was = self.core.unlisten(key_id(key), self.now)
        self.pump()
        return was

    def join_topic(self, topic: str, port: int | None, meta: bytes) -> None:
        """Join ``topic`` for continuous discovery (announcing too when ``port`` is given)."""
        self._check_provider(port, meta)
        self.core.join_topic(self._topic(topic), port, meta, self.now)
        self.pump()

    # == snapshots (``node.snapshots``) ============================================================

    def peers(self) -> tuple[PeerInfo, ...]:
        """The open connections, sorted by ID."""
        return snapshots.peers(self.core, self.connections.peers(), self.now)

    def routing(self) -> RoutingSnapshot:
        return snapshots.routing(self.core.table, self.now)

    def topics(self) -> tuple[TopicInfo, ...]:
        return snapshots.topics(self.core, self._topic_names)

    def stats(self) -> NodeStats:
        sig = self.signaling
        return snapshots.node_stats(
            self.node_id,
            self.core,
            self.connections.stats,
            len(self.connections),
            uptime_s=time.time() - self.started_wall,
            signaling_connected=sig is not None and sig.connected,
            links=self.connections.peers(),
        )
