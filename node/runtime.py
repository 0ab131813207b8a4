"""The asyncio driver of one node: protocol core + transport + signaling + control plane.

Theory of operation:
- ``DhtProtocol`` (sans-IO) holds all DHT state. This module feeds it inputs (messages from
  authenticated links, link changes, timers, API commands) with ``now = loop.time()`` and then
  *pumps* it: queued messages are encoded and sent, events are dispatched, and the single timer
  (``loop.call_at``) is re-armed to ``get_timer()``. Nothing here sleeps in a polling loop.
- Connections: one ``Link`` per peer. A message for a peer without a link is queued (bounded) and
  a dial starts — within a budget of concurrent dials, else the message fails at once and the
  protocol treats the peer as unreachable. A dial is an SDP offer/answer exchange carried over
  the DHT (a SIGNAL relayed through connected peers towards the target, starting with the peer
  that introduced the contact) and, when it is up, over the signaling server; the receiver
  de-duplicates by connection id (``cid``).
- Glare: when both sides dial each other at once, the offer from the lower node ID wins; the
  higher ID drops its own offer and answers.
- Authentication: the first message each way on a new link is a signed HELLO binding the
  sender's public key to (receiver ID, cid). Until the peer's HELLO verifies, nothing else from
  the link is processed; a peer whose key does not hash to the expected ID is dropped.
- Liveness is the protocol's (PING idle peers, ``PeerUnresponsive`` → the link is closed), which
  notices a SIGKILLed peer in seconds instead of aiortc's ~30 s.
- Connection cap: above ``max_connections`` the least recently used peers that the routing table
  does not hold are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from control.errors import CommandError
from control.schema import ErrorCode
from node import codec
from node.config import MAX_PROVIDER_META_BYTES, Config
from node.events import (
    AnnounceResult,
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
from node.identity import DOMAIN_HELLO, Identity, verify
from node.ids import NodeId, id_hex, key_id, node_id_from_public_key, parse_id
from node.messages import Hello
from node.protocol import DhtProtocol
from node.transport.base import LinkBusy, LinkClosed, Transport, TransportError

log = logging.getLogger("node.runtime")

HELLO_TIMEOUT_S = 5.0
MAX_QUEUED_PER_PEER = 64
STATS_LATENCY_PERCENTILES = (50, 90, 99)
BOOTSTRAP_CHECK_S = 5.0
SIGNAL_PAYLOAD_VERSION = 1


@dataclass(frozen=True, slots=True)
class NodeSettings:
    signaling_url: str | None = "ws://127.0.0.1:3000"
    control_endpoint: str | None = None
    events_endpoint: str | None = None
    max_connections: int = 64
    max_concurrent_dials: int = 16
    dial_timeout_s: float = 5.0
    bootstrap_peers: int = 8
    stats_interval_s: float = 5.0
    op_timeout_s: float = 30.0


@dataclass(slots=True)
class _Peer:
    id: NodeId
    link: Any  # node.transport.base.Link
    cid: str
    connected_at: float
    last_used: float


@dataclass(slots=True)
class _Dial:
    peer: NodeId
    done: asyncio.Future[bool]
    cid: str | None = None
    answer: asyncio.Future[str] | None = None
    superseded: bool = False  # glare: we answered the peer's own offer instead


@dataclass(slots=True)
class _TopicName:
    name: str
    port: int | None = None


@dataclass(slots=True)
class RuntimeStats:
    dials_started: int = 0
    dials_failed: int = 0
    hellos_rejected: int = 0
    links_opened: int = 0
    links_closed: int = 0
    signals_relayed_out: int = 0
    messages_dropped_busy: int = 0
    connections_evicted: int = 0


def _hello_payload(receiver: bytes, cid: str) -> bytes:
    return DOMAIN_HELLO + receiver + cid.encode("utf-8")


def _percentiles(samples: list[float], pcts: tuple[int, ...]) -> dict[str, float | None]:
    if not samples:
        return {f"p{p}": None for p in pcts}
    s = sorted(samples)
    return {f"p{p}": s[min(len(s) - 1, int(len(s) * p / 100))] for p in pcts}


class NodeRuntime:
    """One node. ``await start()``, then use the API methods; ``await stop()`` to leave."""

    def __init__(
        self,
        identity: Identity,
        transport: Transport,
        config: Config | None = None,
        settings: NodeSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.identity = identity
        self.node_id: NodeId = identity.node_id
        self.transport = transport
        self.config = config or Config()
        self.settings = settings or NodeSettings()
        self._rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self.proto: DhtProtocol | None = None
        self._peers: dict[NodeId, _Peer] = {}
        self._dials: dict[NodeId, _Dial] = {}
        self._offers: dict[str, _Dial] = {}  # cid → our outgoing dial
        self._seen_cids: deque[str] = deque(maxlen=4096)
        self._queued: dict[NodeId, list[bytes]] = {}
        self._vias: dict[NodeId, NodeId] = {}
        self._ops: dict[int, asyncio.Future[OpResult]] = {}
        self._key_names: dict[bytes, str] = {}
        self._topic_names: dict[bytes, _TopicName] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pumping = False
        self._stopped = asyncio.Event()
        self._bootstrap_wake = asyncio.Event()
        self.signaling: Any = None  # signaling.client.SignalingClient
        self.control: Any = None  # control.server.ControlServer
        self.started_wall = time.time()
        self.rstats = RuntimeStats()
        self.event_listeners: list[Callable[[str, dict[str, Any]], None]] = []

    # == lifecycle ================================================================================

    @property
    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.proto = DhtProtocol(
            self.identity,
            self.config,
            random.Random(self._rng.getrandbits(64)),
            now,
            wall_offset_s=time.time() - now,
        )
        if self.settings.control_endpoint and self.settings.events_endpoint:
            from control.server import ControlServer

            self.control = ControlServer(
                self,
                self.settings.control_endpoint,
                self.settings.events_endpoint,
                node_id=id_hex(self.node_id),
            )
            await self.control.start()
        if self.settings.signaling_url:
            from signaling.client import SignalingClient

            self.signaling = SignalingClient(
                self.settings.signaling_url,
                self.identity,
                on_offer=self._on_offer,
                on_answer=lambda f, c, s: self._on_answer(f, c, s),
                on_registered=self._bootstrap_wake.set,
                on_error=self._on_signaling_error,
            )
            await self.signaling.start()
            self._spawn(self._bootstrap_loop())
        self._spawn(self._stats_loop())
        self._pump()

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for d in list(self._dials.values()):
            if not d.done.done():
                d.done.set_result(False)
        for p in list(self._peers.values()):
            p.link.close()
        if self.signaling is not None:
            await self.signaling.close()
        await self.transport.close()
        if self.control is not None:
            # A short linger lets the reply to a `shutdown` command (and the last events) out.
            await self.control.close(linger_ms=200)
        for fut in self._ops.values():
            if not fut.done():
                fut.cancel()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # == the pump =================================================================================

    def _pump(self) -> None:
        """Move the protocol's outputs to the world. Re-entrant calls are folded into one."""
        proto = self.proto
        if proto is None or self._pumping or self._stopped.is_set():
            return
        self._pumping = True
        try:
            for _ in range(1000):
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
        self._arm_timer()

    def _arm_timer(self) -> None:
        assert self.proto is not None
        assert self._loop is not None
        t = self.proto.get_timer()
        if t == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = t
        self._timer = self._loop.call_at(t, self._on_timer) if t is not None else None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        assert self.proto is not None
        self.proto.handle_timer(self.now)
        self._pump()

    def _deliver(self, peer: NodeId, message: Any, via: NodeId | None) -> None:
        assert self.proto is not None
        try:
            data = codec.encode(message)
        except codec.EncodeError:
            log.exception("refusing to send an invalid message to %s", peer.hex()[:8])
            return
        p = self._peers.get(peer)
        if p is not None:
            self._send_on(p, data)
            return
        queue = self._queued.setdefault(peer, [])
        if len(queue) >= MAX_QUEUED_PER_PEER:
            self.rstats.messages_dropped_busy += 1
            return
        queue.append(data)
        if via is not None:
            self._vias[peer] = via
        if peer in self._dials:
            return
        if len(self._dials) >= self.settings.max_concurrent_dials:
            self._queued.pop(peer, None)
            self._loop_call_soon(lambda: self._unreachable(peer))
            return
        self._start_dial(peer)

    def _loop_call_soon(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon(fn)

    def _unreachable(self, peer: NodeId) -> None:
        if self.proto is None or self._stopped.is_set():
            return
        self._queued.pop(peer, None)
        self.proto.delivery_failed(peer, self.now)
        self._pump()

    def _send_on(self, p: _Peer, data: bytes) -> None:
        p.last_used = self.now
        try:
            p.link.send(data)
        except LinkBusy:
            self.rstats.messages_dropped_busy += 1
        except (LinkClosed, TransportError):
            self._link_closed(p.id, p.link, "send failed")

    # == events ===================================================================================

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        for listener in self.event_listeners:
            listener(topic, payload)
        if self.control is not None:
            self.control.publish(topic, payload)

    def _on_event(self, ev: Event) -> None:
        match ev:
            case OpCompleted():
                fut = self._ops.pop(ev.op_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev.result)
            case LookupDone():
                self.publish(
                    "lookup.done",
                    {
                        "kind": ev.kind,
                        "target": ev.target.hex(),
                        "hops": ev.hops,
                        "duration_ms": round(ev.duration_s * 1000, 3),
                        "found": ev.found,
                        "contacted": ev.contacted,
                        "failed": ev.failed,
                    },
                )
            case RecordStored():
                payload: dict[str, Any] = {
                    "key_id": ev.record.key.hex(),
                    "publisher": ev.record.pub.hex(),
                    "record_ts": ev.record.ts,
                    "size": len(ev.record.data),
                    "cached": ev.cached,
                    "origin": "local" if ev.local else "remote",
                }
                name = self._key_names.get(ev.record.key)
                if ev.local and name is not None:
                    payload["key"] = name
                self.publish("record.stored", payload)
            case RecordExpired():
                self.publish(
                    "record.expired",
                    {"key_id": ev.key.hex(), "publisher": ev.pub.hex(), "cached": ev.cached},
                )
            case PeerUnresponsive():
                p = self._peers.get(ev.peer)
                if p is not None:
                    self._link_closed(p.id, p.link, "unresponsive")
            case PeerMisbehaved():
                log.warning("peer %s sent a bad message: %s", ev.peer.hex()[:8], ev.reason)
                if ev.count >= self.config.malformed_disconnect_threshold:
                    p = self._peers.get(ev.peer)
                    if p is not None:
                        self._link_closed(p.id, p.link, "misbehaving")
            case SignalReceived():
                self._on_signal_payload(ev.source, ev.payload)
            case MaintenanceRefresh():
                self.publish("maintenance.refresh", {"buckets": ev.buckets})
            case MaintenanceRepublish():
                self.publish("maintenance.republish", {"keys": ev.keys})
            case MaintenanceRepair():
                self.publish(
                    "maintenance.repair",
                    {"keys_checked": ev.keys_checked, "replicas_restored": ev.replicas_restored},
                )
            case TopicPeerFound():
                self.publish(
                    "topic.peer",
                    {
                        "topic": self._topic_label(ev.topic),
                        "topic_id": ev.topic.hex(),
                        "peer": ev.provider.node.hex(),
                        "port": ev.provider.port or None,
                        "meta": ev.provider.meta_value(),
                    },
                )
            case TopicPeerLost():
                self.publish(
                    "topic.peer_lost",
                    {
                        "topic": self._topic_label(ev.topic),
                        "topic_id": ev.topic.hex(),
                        "peer": ev.peer.hex(),
                        "reason": ev.reason,
                    },
                )
            case _:
                pass

    def _topic_label(self, topic: bytes) -> str:
        t = self._topic_names.get(topic)
        return t.name if t is not None else topic.hex()

    # == connections ==============================================================================

    def _start_dial(self, peer: NodeId) -> _Dial:
        assert self._loop is not None
        dial = _Dial(peer, self._loop.create_future())
        self._dials[peer] = dial
        self.rstats.dials_started += 1
        self._spawn(self._dial(dial))
        return dial

    async def _dial(self, dial: _Dial) -> None:
        """Run one dial; its future is resolved and its entry removed whatever happens."""
        peer = dial.peer
        ok = False
        try:
            async with asyncio.timeout(self.settings.dial_timeout_s):
                ok = await self._dial_inner(dial)
        except TimeoutError:
            ok = peer in self._peers
        except (TransportError, OSError) as exc:
            log.debug("dial %s failed: %s", peer.hex()[:8], exc)
        except Exception:  # a library bug must not leave the dial (and its waiters) hanging
            log.exception("dial %s crashed", peer.hex()[:8])
        finally:
            # Also on cancellation: a dial must never stay pending (callers await `done`).
            if dial.cid is not None:
                self._offers.pop(dial.cid, None)
            if self._dials.get(peer) is dial:
                del self._dials[peer]
            ok = ok or peer in self._peers
            if not dial.done.done():
                dial.done.set_result(ok)
        if ok:
            self._flush(peer)
        else:
            self.rstats.dials_failed += 1
            self._unreachable(peer)

    async def _dial_inner(self, dial: _Dial) -> bool:
        peer = dial.peer
        pending = await self.transport.create_offer()
        if dial.superseded:  # glare lost while gathering: the peer's offer is being answered
            pending.cancel()
            return await asyncio.shield(dial.done)  # never cancel our own future
        try:
            cid = secrets.token_hex(8)
            assert self._loop is not None
            dial.cid = cid
            dial.answer = self._loop.create_future()
            self._offers[cid] = dial
            sent = await self._send_sdp(peer, "offer", cid, pending.sdp, self._vias.get(peer))
            if not sent:
                raise TransportError("no route to send the offer (no peers, no signaling)")
            answer = await dial.answer
            if dial.superseded:
                pending.cancel()
                return await asyncio.shield(dial.done)  # never cancel our own future
            await pending.accept_answer(answer)
            link = await pending.wait_open(self.settings.dial_timeout_s)
        except BaseException:
            pending.cancel()
            raise
        return await self._handshake(link, peer, cid)

    async def _send_sdp(
        self, peer: NodeId, kind: str, cid: str, sdp: str, via: NodeId | None
    ) -> bool:
        """Send an offer/answer over the DHT relay and, when connected, the signaling server."""
        sent = False
        assert self.proto is not None
        if self.proto.connected:
            payload = msgpack.packb(
                {"v": SIGNAL_PAYLOAD_VERSION, "t": kind, "cid": cid, "sdp": sdp},
                use_bin_type=True,
            )
            if self.proto.send_signal(peer, payload, self.now, via):
                log.debug("%s to %s relayed over the DHT (cid %s)", kind, peer.hex()[:8], cid)
                self.rstats.signals_relayed_out += 1
                sent = True
                self._pump()
        sig = self.signaling
        if sig is not None and sig.connected:
            try:
                if kind == "offer":
                    await sig.send_offer(peer, cid, sdp)
                else:
                    await sig.send_answer(peer, cid, sdp)
                sent = True
            except Exception as exc:  # signaling is best effort next to the relay
                log.debug("signaling %s to %s failed: %s", kind, peer.hex()[:8], exc)
        return sent

    def _on_signal_payload(self, source: NodeId, payload: bytes) -> None:
        try:
            obj = msgpack.unpackb(payload, raw=False)
            kind, cid, sdp = obj["t"], obj["cid"], obj["sdp"]
            if not (isinstance(cid, str) and isinstance(sdp, str) and len(cid) <= 64):
                raise ValueError("bad field types")
        except Exception as exc:  # a relayed payload is untrusted input
            log.debug("dropping a bad relayed signal from %s: %s", source.hex()[:8], exc)
            return
        log.debug("relayed %s from %s (cid %s)", kind, source.hex()[:8], cid)
        if kind == "offer":
            self._spawn(self._on_offer(source, cid, sdp))
        elif kind == "answer":
            self._on_answer(source, cid, sdp)

    def _on_answer(self, sender: NodeId, cid: str, sdp: str) -> None:
        dial = self._offers.get(cid)
        if dial is None or dial.peer != sender or dial.answer is None or dial.answer.done():
            return
        dial.answer.set_result(sdp)

    def _on_signaling_error(self, code: str, message: str, cid: str | None) -> None:
        log.debug("signaling error %s: %s (cid %s)", code, message, cid)

    async def _on_offer(self, sender: NodeId, cid: str, sdp: str) -> None:
        if sender == self.node_id or cid in self._seen_cids or self._stopped.is_set():
            return
        self._seen_cids.append(cid)
        ours = self._dials.get(sender)
        if ours is not None and self.node_id < sender and not ours.superseded:
            log.debug("glare with %s: our offer wins", sender.hex()[:8])
            return  # glare: our offer (sent or about to be) wins, the peer answers it
        if ours is not None:
            ours.superseded = True
            if ours.answer is not None and not ours.answer.done():
                ours.answer.set_result("")
        try:
            pending = await self.transport.accept_offer(sdp)
        except (TransportError, ValueError) as exc:
            log.debug("bad offer from %s: %s", sender.hex()[:8], exc)
            return
        try:
            if not await self._send_sdp(sender, "answer", cid, pending.sdp, None):
                pending.cancel()
                return
            link = await pending.wait_open(self.settings.dial_timeout_s)
        except (TransportError, OSError) as exc:
            log.debug("answering %s failed: %s", sender.hex()[:8], exc)
            pending.cancel()
            return
        await self._handshake(link, sender, cid)

    async def _handshake(self, link: Any, peer: NodeId, cid: str) -> bool:
        """Exchange signed HELLOs; register the peer when its HELLO verifies."""
        assert self._loop is not None
        verified: asyncio.Future[bool] = self._loop.create_future()
        early: list[bytes] = []

        def on_message(data: bytes) -> None:
            if verified.done():
                if verified.result():
                    self._on_link_message(peer, link, data)
                return
            try:
                msg = codec.decode(data)
            except codec.DecodeError:
                msg = None
            if not isinstance(msg, Hello):
                early.append(data)  # cannot happen on an ordered channel; keep it safe
                if len(early) > 16:
                    verified.set_result(False)
                return
            ok = (
                node_id_from_public_key(msg.public_key) == peer
                and msg.receiver == self.node_id
                and msg.cid == cid
                and verify(msg.public_key, msg.sig, _hello_payload(self.node_id, cid))
            )
            verified.set_result(ok)

        def on_close() -> None:
            if not verified.done():
                verified.set_result(False)
            else:
                self._link_closed(peer, link, "closed")

        link.set_handlers(on_message, on_close)
        hello = Hello(
            self.identity.public_key,
            peer,
            cid,
            self.identity.sign(_hello_payload(peer, cid)),
        )
        try:
            link.send(codec.encode(hello))
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                ok = await verified
        except (TimeoutError, TransportError):
            ok = False
        if not ok:
            self.rstats.hellos_rejected += 1
            link.close()
            return False
        self._register(peer, link, cid)
        return True

    def _register(self, peer: NodeId, link: Any, cid: str) -> None:
        assert self.proto is not None
        old = self._peers.get(peer)
        now = self.now
        self.rstats.links_opened += 1
        self._peers[peer] = _Peer(peer, link, cid, now, now)
        if old is not None and old.link is not link:
            old.link.close()  # a reconnect (e.g. the peer restarted): the new link wins
        else:
            self.publish("peer.connected", {"peer": peer.hex()})
        self.proto.peer_connected(peer, now)
        dial = self._dials.get(peer)
        if dial is not None and not dial.done.done() and dial.superseded:
            dial.done.set_result(True)
        self._flush(peer)
        self._enforce_cap()
        self._pump()

    def _flush(self, peer: NodeId) -> None:
        p = self._peers.get(peer)
        queue = self._queued.pop(peer, None)
        if p is None or not queue:
            return
        for data in queue:
            self._send_on(p, data)

    def _on_link_message(self, peer: NodeId, link: Any, data: bytes) -> None:
        p = self._peers.get(peer)
        if p is None or p.link is not link or self.proto is None:
            return
        p.last_used = self.now
        self.proto.receive(peer, data, p.last_used)
        self._pump()

    def _link_closed(self, peer: NodeId, link: Any, reason: str) -> None:
        p = self._peers.get(peer)
        link.close()
        if p is None or p.link is not link:
            return
        del self._peers[peer]
        self.rstats.links_closed += 1
        self.publish("peer.disconnected", {"peer": peer.hex(), "reason": reason})
        if self.proto is not None and not self._stopped.is_set():
            self.proto.peer_disconnected(peer, self.now)
            self._pump()
            if not self._peers:
                self._bootstrap_wake.set()

    def _enforce_cap(self) -> None:
        assert self.proto is not None
        excess = len(self._peers) - self.settings.max_connections
        if excess <= 0:
            return
        table = self.proto.table
        candidates = sorted(
            (p for p in self._peers.values() if p.id not in table), key=lambda p: p.last_used
        )
        for p in candidates[:excess]:
            self.rstats.connections_evicted += 1
            self._link_closed(p.id, p.link, "connection cap")

    async def dial(self, peer: NodeId) -> bool:
        """Connect to ``peer`` (no-op when connected); True once an authenticated link is up."""
        if peer in self._peers:
            return True
        if peer == self.node_id:
            return False
        dial = self._dials.get(peer) or self._start_dial(peer)
        try:
            # `_dial` bounds itself; this outer bound also covers a library call that swallowed
            # the inner timeout's cancellation.
            async with asyncio.timeout(self.settings.dial_timeout_s + HELLO_TIMEOUT_S + 1.0):
                return await asyncio.shield(dial.done)
        except TimeoutError:
            log.warning("dial %s overran its deadline", peer.hex()[:8])
            return peer in self._peers

    # == bootstrap ================================================================================

    async def _bootstrap_loop(self) -> None:
        """Whenever we have no peers: ask the signaling server for some, dial them, join."""
        sig = self.signaling
        assert sig is not None
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BOOTSTRAP_CHECK_S):
                    await self._bootstrap_wake.wait()
            self._bootstrap_wake.clear()
            assert self.proto is not None
            if len(self._peers) >= 1 and len(self.proto.table) >= 1:
                continue
            if not sig.connected:
                continue
            try:
                candidates = await sig.peers(self.settings.bootstrap_peers * 2)
            except Exception as exc:  # server gone again: the next wake-up retries
                log.debug("signaling peers failed: %s", exc)
                continue
            if not candidates:
                continue
            picks = candidates[: self.settings.bootstrap_peers]
            outcomes = await asyncio.gather(*(self.dial(p) for p in picks), return_exceptions=True)
            results = [r is True for r in outcomes]
            if not any(results):
                log.info("bootstrap: none of %d dials succeeded; retrying", len(picks))
            if any(results):
                self.proto.join(self.now)
                self._pump()

    async def _stats_loop(self) -> None:
        while not self._stopped.is_set():
            await asyncio.sleep(self.settings.stats_interval_s)
            self.publish("node.stats", await self.stats())

    # == operations ===============================================================================

    async def _op(self, start: Callable[[DhtProtocol, float], int]) -> OpResult:
        assert self.proto is not None
        assert self._loop is not None
        op_id = start(self.proto, self.now)
        fut: asyncio.Future[OpResult] = self._loop.create_future()
        self._ops[op_id] = fut
        self._pump()
        try:
            async with asyncio.timeout(self.settings.op_timeout_s):
                return await fut
        except TimeoutError:
            self._ops.pop(op_id, None)
            raise CommandError(ErrorCode.TIMEOUT, "operation timed out") from None

    async def store_value(self, key: str, value: bytes) -> StoreResult:
        kid = key_id(key)
        self._key_names[kid] = key
        r = await self._op(lambda p, now: p.store(kid, value, now))
        assert isinstance(r, StoreResult)
        return r

    async def get_value(self, key: str) -> GetResult:
        kid = key_id(key)
        r = await self._op(lambda p, now: p.get(kid, now))
        assert isinstance(r, GetResult)
        return r

    # == NodeAPI (control plane) ==================================================================

    async def id(self) -> dict[str, Any]:
        return {"id": id_hex(self.node_id), "public_key": self.identity.public_key.hex()}

    async def peers(self) -> dict[str, Any]:
        assert self.proto is not None
        now = self.now
        table = self.proto.table
        return {
            "peers": [
                {
                    "id": p.id.hex(),
                    "rtt_ms": (
                        round(self.proto.peer_rtt[p.id] * 1000, 3)
                        if p.id in self.proto.peer_rtt
                        else None
                    ),
                    "connected_for_s": round(now - p.connected_at, 3),
                    "in_routing_table": p.id in table,
                }
                for p in sorted(self._peers.values(), key=lambda p: p.id)
            ]
        }

    async def rt(self) -> dict[str, Any]:
        assert self.proto is not None
        t = self.proto.table
        return {"size": len(t), "buckets_used": sum(1 for _, b in t.buckets() if b.contacts)}

    async def dump(self) -> dict[str, Any]:
        assert self.proto is not None
        now = self.now
        return {
            "id": id_hex(self.node_id),
            "buckets": [
                {
                    "index": i,
                    "contacts": [
                        {"id": c.id.hex(), "last_seen_s_ago": round(now - c.last_seen, 3)}
                        for c in b.contacts
                    ],
                    "replacements": [r.hex() for r in b.replacements],
                }
                for i, b in self.proto.table.buckets()
            ],
        }

    def _parse_node(self, node_id: str) -> NodeId:
        try:
            return parse_id(node_id)
        except ValueError as exc:
            raise CommandError(ErrorCode.BAD_ARGS, str(exc)) from None

    async def ping(self, *, node_id: str) -> dict[str, Any]:
        peer = self._parse_node(node_id)
        if peer == self.node_id:
            raise CommandError(ErrorCode.BAD_ARGS, "that is this node's own id")
        started = self.now
        if not await self.dial(peer):
            raise CommandError(ErrorCode.UNREACHABLE, f"cannot connect to {node_id[:8]}")
        r = await self._op(lambda p, now: p.ping(peer, now))
        assert isinstance(r, PingResult)
        if not r.ok:
            raise CommandError(ErrorCode.TIMEOUT, f"no PONG from {node_id[:8]}")
        return {
            "id": peer.hex(),
            "rtt_ms": round(r.rtt_s * 1000, 3),
            "total_ms": round((self.now - started) * 1000, 3),
        }

    async def find(self, *, node_id: str) -> dict[str, Any]:
        target = self._parse_node(node_id)
        r = await self._op(lambda p, now: p.find_node(target, now))
        assert isinstance(r, FindNodeResult)
        return {
            "target": target.hex(),
            "closest": [c.hex() for c in r.closest],
            "hops": r.hops,
            "duration_ms": round(r.duration_s * 1000, 3),
        }

    async def connect(self, *, node_id: str) -> dict[str, Any]:
        peer = self._parse_node(node_id)
        if peer == self.node_id:
            raise CommandError(ErrorCode.BAD_ARGS, "that is this node's own id")
        started = self.now
        if not await self.dial(peer):
            raise CommandError(ErrorCode.UNREACHABLE, f"cannot connect to {node_id[:8]}")
        return {
            "id": peer.hex(),
            "connected": True,
            "duration_ms": round((self.now - started) * 1000, 3),
        }

    async def disconnect(self, *, node_id: str) -> dict[str, Any]:
        peer = self._parse_node(node_id)
        p = self._peers.get(peer)
        if p is not None:
            self._link_closed(peer, p.link, "closed by request")
        return {"id": peer.hex(), "disconnected": p is not None}

    async def store(self, *, key: str, value: bytes) -> dict[str, Any]:
        if len(value) > self.config.max_record_data_bytes:
            raise CommandError(
                ErrorCode.TOO_LARGE,
                f"value of {len(value)} bytes exceeds {self.config.max_record_data_bytes}",
            )
        r = await self.store_value(key, value)
        result = {
            "key": key,
            "key_id": r.key.hex(),
            "acks": r.acks,
            "attempts": r.attempts,
            "quorum": r.quorum,
            "duration_ms": round(r.duration_s * 1000, 3),
        }
        if not r.ok:
            raise CommandError(
                ErrorCode.QUORUM_NOT_MET,
                f"{r.acks} of {r.attempts} replicas acknowledged, quorum is {r.quorum}",
                {**result, "reasons": sorted(set(r.reasons))},
            )
        return result

    async def get(self, *, key: str) -> dict[str, Any]:
        r = await self.get_value(key)
        if r.record is None:
            raise CommandError(
                ErrorCode.NOT_FOUND,
                f"key not found: {key}",
                {"key": key, "hops": r.hops, "contacted": r.contacted},
            )
        return {
            "key": key,
            "key_id": r.key.hex(),
            "value": r.record.data,
            "publisher": r.record.pub.hex(),
            "ts": r.record.ts,
            "hops": r.hops,
            "duration_ms": round(r.duration_s * 1000, 3),
        }

    async def stats(self) -> dict[str, Any]:
        assert self.proto is not None
        s = self.proto.stats
        lat = [x * 1000 for x in s.lookup_latencies_s]
        return {
            "id": id_hex(self.node_id),
            "uptime_s": round(time.time() - self.started_wall, 3),
            "messages_in": dict(s.messages_in),
            "messages_out": dict(s.messages_out),
            "lookups": s.lookups,
            "lookup_latency_ms": _percentiles(lat, STATS_LATENCY_PERCENTILES),
            "store_size": len(self.proto.records),
            "providers_held": self.proto.providers.count(),
            "connections": len(self._peers),
            "routing_table_size": len(self.proto.table),
            "dropped_malformed": s.dropped_malformed,
            "dropped_unexpected": s.dropped_unexpected,
            "requests_failed": s.requests_failed,
            "records_rejected": s.records_rejected,
            "dials_started": self.rstats.dials_started,
            "links_opened": self.rstats.links_opened,
            "dials_failed": self.rstats.dials_failed,
            "hellos_rejected": self.rstats.hellos_rejected,
            "signaling_connected": bool(self.signaling is not None and self.signaling.connected),
            "topics_joined": len(self.proto.joined),
        }

    @staticmethod
    def _meta_bytes(meta: Any) -> bytes:
        if meta is None:
            return b""
        try:
            raw = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise CommandError(ErrorCode.BAD_ARGS, f"metadata is not JSON: {exc}") from None
        if len(raw) > MAX_PROVIDER_META_BYTES:
            raise CommandError(
                ErrorCode.TOO_LARGE,
                f"metadata of {len(raw)} bytes exceeds {MAX_PROVIDER_META_BYTES} bytes",
            )
        return raw

    def _topic(self, topic: str, port: int | None = None) -> bytes:
        tid = key_id(topic)
        self._topic_names[tid] = _TopicName(topic, port)
        return tid

    async def announce(
        self, *, topic: str, port: int | None = None, meta: Any = None
    ) -> dict[str, Any]:
        raw = self._meta_bytes(meta)
        if port is not None and not 1 <= port <= 65535:
            raise CommandError(ErrorCode.BAD_ARGS, "port must be in 1..65535")
        tid = self._topic(topic, port)
        r = await self._op(lambda p, now: p.announce(tid, port, raw, now))
        assert isinstance(r, AnnounceResult)
        assert self.proto is not None
        self.proto.join_topic(tid, port if port is not None else 0, raw, self.now, False)
        self._pump()
        return {
            "topic": topic,
            "topic_id": tid.hex(),
            "acks": r.acks,
            "attempts": r.attempts,
            "quorum": r.quorum,
            "ok": r.ok,
        }

    async def unannounce(self, *, topic: str) -> dict[str, Any]:
        tid = key_id(topic)
        assert self.proto is not None
        op_started = self.proto.leave_topic(tid, self.now)
        left = False
        if op_started is not None:
            fut: asyncio.Future[OpResult] = asyncio.get_running_loop().create_future()
            self._ops[op_started] = fut
            self._pump()
            r = await fut
            left = isinstance(r, AnnounceResult) and r.ok
        self._pump()
        return {"topic": topic, "topic_id": tid.hex(), "left": left}

    async def lookup(self, *, topic: str) -> dict[str, Any]:
        tid = self._topic(topic)
        r = await self._op(lambda p, now: p.get_peers(tid, now))
        assert isinstance(r, GetPeersResult)
        return {
            "topic": topic,
            "topic_id": tid.hex(),
            "peers": [
                {"id": p.node.hex(), "port": p.port or None, "meta": p.meta_value(), "ts": p.ts}
                for p in sorted(r.providers, key=lambda p: p.node)
            ],
            "hops": r.hops,
            "duration_ms": round(r.duration_s * 1000, 3),
        }

    async def join(
        self, *, topic: str, port: int | None = None, meta: Any = None
    ) -> dict[str, Any]:
        raw = self._meta_bytes(meta)
        if port is not None and not 1 <= port <= 65535:
            raise CommandError(ErrorCode.BAD_ARGS, "port must be in 1..65535")
        tid = self._topic(topic, port)
        assert self.proto is not None
        self.proto.join_topic(tid, port, raw, self.now)
        self._pump()
        return {"topic": topic, "topic_id": tid.hex(), "announcing": port is not None}

    async def topics(self) -> dict[str, Any]:
        assert self.proto is not None
        return {
            "topics": [
                {
                    "topic": self._topic_label(jt.topic),
                    "topic_id": jt.topic.hex(),
                    "announcing": jt.announcing,
                    "port": jt.port or None,
                    "peers_known": len(jt.known),
                }
                for jt in self.proto.joined.values()
            ]
        }

    async def shutdown(self) -> dict[str, Any]:
        assert self._loop is not None
        self._loop.call_later(0.05, lambda: self._spawn_stop())
        return {"shutting_down": True}

    def _spawn_stop(self) -> None:
        assert self._loop is not None
        self._loop.create_task(self.stop())
