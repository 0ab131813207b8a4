# Over 600 lines: one state machine (dial, glare, relay, HELLO, budget, bans) per peer table.
"""The connection manager: one authenticated ``Link`` per peer, dialed on demand.

Theory of operation:
- ``send(peer, data, via)`` writes on the peer's link; without one the message is queued
  (bounded, ``MAX_QUEUED_PER_PEER``) and a dial starts — within ``max_concurrent_dials``, else
  the core is told at once that the peer is unreachable. The queue is flushed when the link is up
  and dropped (``unreachable``) when the dial fails.
- A dial is an SDP offer/answer exchange carried over the DHT (a SIGNAL relayed through connected
  peers towards the target, starting with ``via``, the peer that introduced the contact) and,
  while it is registered, over the signaling server. The receiver de-duplicates offers by
  connection id (``cid``).
- Glare: when both sides dial each other at once, the offer from the lower node ID wins; the
  higher ID drops its own offer (even while it is still gathering) and answers.
- Authentication (``node.hello``): the first message each way on a new link is a signed HELLO
  binding the sender's key to (receiver ID, cid). Until the peer's HELLO verifies nothing else
  from the link is processed; a key that does not hash to the expected ID, another receiver or
  another cid refuses the link (``stats.hellos_rejected``); so does a HELLO of another major
  protocol version (also counted in ``stats.hellos_bad_version``). Every link dropped before its
  HELLO verified is logged at INFO with the reason (the usual trap: a peer whose data channel is
  neither the negotiated stream 0 nor an in-band channel labelled ``dht`` never delivers one).
- Link budget (``node.link_budget``): above ``max_connections`` the least recently used peers
  that the core does not need (``CoreHooks.needed``: no request in flight) are closed, and
  ``sweep()`` closes links idle for ``link_idle_s`` beyond the ``min_links`` closest peers. A
  link's use is DHT traffic: keepalive messages (PING/PONG) do not make a link "used".
- Invariant: every dial resolves (``dial()`` answers True/False, never hangs or raises
  ``CancelledError``), whatever the transport or the signaling do.

The manager never touches the DHT core directly: it reports through ``CoreHooks``
(``node.core_hooks``), which the runtime implements (and a test can fake).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from dataclasses import dataclass

import msgpack

from node import codec
from node.bans import BanList
from node.core_hooks import CoreHooks
from node.events import PeerConnected, PeerDisconnected
from node.hello import bad_version, hello_payload, hello_problem
from node.identity import Identity
from node.ids import NodeId, as_int, short_id
from node.link_budget import Budget, LinkUse, links_to_close
from node.messages import PROTOCOL_VERSION, Hello, MsgType
from node.signaling_port import SignalingPort
from node.tasks import TaskSet
from node.transport.base import (
    CloseReason,
    Link,
    LinkBusy,
    LinkClosed,
    PendingOffer,
    Transport,
    TransportError,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 5.0
MAX_QUEUED_PER_PEER = 64
SIGNAL_PAYLOAD_VERSION = 1
SEEN_CIDS_MAX = 4096
DIAL_FAILURES_KEPT = 256  # peers whose last dial failure reason is remembered
MAX_CID_CHARS = 64
MAX_EARLY_MESSAGES = 16
KEEPALIVE_TYPES = frozenset((MsgType.PING, MsgType.PONG))


def is_keepalive(data: bytes) -> bool:
    """A PING or PONG: a msgpack array (``0x9N``) whose first element is the type (fixint)."""
    return len(data) > 1 and data[0] & 0xF0 == 0x90 and data[1] in KEEPALIVE_TYPES


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The connection manager's limits (the node's settings extend them: ``NodeSettings``)."""

    max_connections: int = 64
    min_links: int = 8
    """Links to the closest peers that are kept however idle (``node.link_budget``)."""
    link_idle_s: float = 120.0
    """Other links unused this long are closed (0: never); the contact stays in the table."""
    max_concurrent_dials: int = 16
    dial_timeout_s: float = 5.0


@dataclass(slots=True)
class ConnectionStats:
    dials_started: int = 0
    dials_failed: int = 0
    hellos_rejected: int = 0
    hellos_bad_version: int = 0
    links_opened: int = 0
    links_closed: int = 0
    signals_relayed_out: int = 0
    messages_dropped_busy: int = 0
    connections_evicted: int = 0
    links_closed_idle: int = 0
    offers_refused_banned: int = 0


@dataclass(frozen=True, slots=True)
class PeerLink:
    """A snapshot of one open connection (times on the loop's clock)."""

    id: NodeId
    cid: str
    connected_at: float
    last_used: float
    path: str | None = None  # host / srflx / relay (node.transport.ice_path); None: unknown


@dataclass(slots=True)
class _Peer:
    id: NodeId
    link: Link
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
    pending: PendingOffer | None = None  # once ICE has gathered (for the failure reason)


class ConnectionManager:
    """Dialing, glare, SDP relay, HELLO and the connection cap (see the module docstring)."""

    def __init__(
        self,
        identity: Identity,
        transport: Transport,
        hooks: CoreHooks,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.identity = identity
        self.node_id: NodeId = identity.node_id
        self.transport = transport
        self.hooks = hooks
        self.limits = limits = limits or ConnectionLimits()
        self.budget = Budget(limits.max_connections, limits.min_links, limits.link_idle_s)
        self.max_concurrent_dials = limits.max_concurrent_dials
        self.dial_timeout_s = limits.dial_timeout_s
        self.signaling: SignalingPort | None = None
        """Set by the runtime once the signaling client exists; offers also go this way."""
        self.stats = ConnectionStats()
        self.protocol_version = PROTOCOL_VERSION
        """What our HELLO announces and the major version we accept (a test may change it)."""
        self._peers: dict[NodeId, _Peer] = {}
        self._dials: dict[NodeId, _Dial] = {}
        self._offers: dict[str, _Dial] = {}  # cid → our outgoing dial
        self._seen_cids: deque[str] = deque(maxlen=SEEN_CIDS_MAX)
        self._queued: dict[NodeId, list[bytes]] = {}
        self._vias: dict[NodeId, NodeId] = {}
        self._failures: dict[NodeId, str] = {}  # the last dial failure per peer (bounded)
        self._tasks = TaskSet("connections")
        self._closed = False
        self._draining = False
        self._banned = BanList()  # on the loop's clock
        self._watched: set[NodeId] = set()  # links whose idle peer the transport probes

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    # == views ====================================================================================

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def peers(self) -> tuple[PeerLink, ...]:
        """The open connections, sorted by peer ID."""
        return tuple(
            PeerLink(p.id, p.cid, p.connected_at, p.last_used, p.link.path)
            for p in sorted(self._peers.values(), key=lambda p: p.id)
        )

    def failure(self, peer: NodeId) -> str | None:
        """Why the last dial to ``peer`` failed (None: it has not failed, or long ago)."""
        return self._failures.get(peer)

    def link(self, peer: NodeId) -> Link | None:
        """The authenticated link to ``peer``, if open (raw access, e.g. for fault injection)."""
        p = self._peers.get(peer)
        return p.link if p is not None else None

    @property
    def dials_in_progress(self) -> int:
        return len(self._dials)

    # == sending ==================================================================================

    def send(self, peer: NodeId, data: bytes, via: NodeId | None = None) -> None:
        """Send one encoded message, dialing ``peer`` (through ``via`` first) when needed."""
        p = self._peers.get(peer)
        if p is not None:
            self._send_on(p, data)
            return
        if self._draining:
            return  # leaving: no new links (the core's request times out or is failed)
        queue = self._queued.setdefault(peer, [])
        if len(queue) >= MAX_QUEUED_PER_PEER:
            self.stats.messages_dropped_busy += 1
            return
        queue.append(data)
        if via is not None:
            self._vias[peer] = via
        if peer in self._dials:
            return
        if len(self._dials) >= self.max_concurrent_dials:
            self._queued.pop(peer, None)
            self._loop.call_soon(self._unreachable, peer)
            return
        self._start_dial(peer)

    def _send_on(self, p: _Peer, data: bytes) -> None:
        if not is_keepalive(data):
            p.last_used = self._loop.time()
        try:
            p.link.send(data)
        except LinkBusy:
            self.stats.messages_dropped_busy += 1
        except (LinkClosed, TransportError):
            self._link_closed(p.id, p.link, "send failed")

    def _unreachable(self, peer: NodeId) -> None:
        if self._closed:
            return
        self._queued.pop(peer, None)
        self.hooks.unreachable(peer)

    def _flush(self, peer: NodeId) -> None:
        p = self._peers.get(peer)
        queue = self._queued.pop(peer, None)
        if p is None or not queue:
            return
        for data in queue:
            self._send_on(p, data)

    # == bans =====================================================================================

    def ban(self, peer: NodeId, for_s: float) -> None:
        """Close the link to ``peer`` and refuse it (its offers, our dials) for ``for_s``."""
        self._banned.hold(peer, self._loop.time(), for_s)
        self.close(peer, "banned")

    def banned(self, peer: NodeId) -> bool:
        return self._banned.banned(peer, self._loop.time())

    # == dialing ==================================================================================

    async def dial(self, peer: NodeId) -> bool:
        """Connect to ``peer`` (no-op when connected); True once an authenticated link is up."""
        if peer in self._peers:
            return True
        if peer == self.node_id or self._closed or self._draining or self.banned(peer):
            return False
        dial = self._dials.get(peer) or self._start_dial(peer)
        try:
            # `_dial` bounds itself; this outer bound also covers a library call that swallowed
            # the inner timeout's cancellation.
            async with asyncio.timeout(self.dial_timeout_s + HELLO_TIMEOUT_S + 1.0):
                return await asyncio.shield(dial.done)
        except TimeoutError:
            log.warning("dial %s overran its deadline", short_id(peer))
            return peer in self._peers

    def _start_dial(self, peer: NodeId) -> _Dial:
        dial = _Dial(peer, self._loop.create_future())
        self._dials[peer] = dial
        self.stats.dials_started += 1
        self._tasks.spawn(self._dial(dial))
        return dial

    async def _dial(self, dial: _Dial) -> None:
        """Run one dial; its future is resolved and its entry removed whatever happens."""
        peer = dial.peer
        ok = False
        reason = "dial failed"
        try:
            async with asyncio.timeout(self.dial_timeout_s):
                ok = await self._dial_inner(dial)
        except TimeoutError:
            ok = peer in self._peers
            reason = self._timeout_reason(dial)
        except (TransportError, OSError) as exc:
            reason = str(exc)
            log.debug("dial %s failed: %s", short_id(peer), exc)
        except Exception:  # a library bug must not leave the dial (and its waiters) hanging
            log.exception("dial %s crashed", short_id(peer))
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
            self._failures.pop(peer, None)
            self._flush(peer)
        else:
            self.stats.dials_failed += 1
            self._note_failure(peer, reason)
            self._unreachable(peer)

    def _timeout_reason(self, dial: _Dial) -> str:
        """What a dial that ran out of time was waiting for."""
        within = f"within {self.dial_timeout_s:g} s"
        if dial.pending is None:
            return f"ICE gathering did not finish {within} (STUN/TURN servers unreachable?)"
        answer = dial.answer  # cancelled with the dial when it was still awaited
        if answer is None or not answer.done() or answer.cancelled():
            return f"no answer {within}"
        detail = dial.pending.diagnose()
        return f"the link did not open {within}" + (f": {detail}" if detail else "")

    def _note_failure(self, peer: NodeId, reason: str) -> None:
        log.info("dial %s failed: %s", short_id(peer), reason)
        self._failures.pop(peer, None)
        self._failures[peer] = reason
        while len(self._failures) > DIAL_FAILURES_KEPT:
            del self._failures[next(iter(self._failures))]

    async def _dial_inner(self, dial: _Dial) -> bool:
        peer = dial.peer
        pending = await self.transport.create_offer()
        dial.pending = pending
        if dial.superseded:  # glare lost while gathering: the peer's offer is being answered
            pending.cancel()
            return await asyncio.shield(dial.done)  # never cancel our own future
        try:
            cid = secrets.token_hex(8)
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
            link = await pending.wait_open(self.dial_timeout_s)
        except BaseException:
            pending.cancel()
            raise
        return await self._handshake(link, peer, cid)

    async def _send_sdp(
        self, peer: NodeId, kind: str, cid: str, sdp: str, via: NodeId | None
    ) -> bool:
        """Send an offer/answer over the DHT relay and, when registered, the signaling server."""
        sent = False
        payload = msgpack.packb(
            {"v": SIGNAL_PAYLOAD_VERSION, "t": kind, "cid": cid, "sdp": sdp}, use_bin_type=True
        )
        if self.hooks.relay_signal(peer, payload, via):
            log.debug("%s to %s relayed over the DHT (cid %s)", kind, short_id(peer), cid)
            self.stats.signals_relayed_out += 1
            sent = True
        sig = self.signaling
        if sig is not None and sig.connected:
            try:
                if kind == "offer":
                    await sig.send_offer(peer, cid, sdp)
                else:
                    await sig.send_answer(peer, cid, sdp)
                sent = True
            except Exception as exc:  # signaling is best effort next to the relay
                log.debug("signaling %s to %s failed: %s", kind, short_id(peer), exc)
        return sent

    # == what arrives (signaling server or DHT relay) =============================================

    def on_signal(self, source: NodeId, payload: bytes) -> None:
        """A connection-setup payload relayed over the DHT (untrusted input)."""
        try:
            obj = msgpack.unpackb(payload, raw=False)
            kind, cid, sdp = obj["t"], obj["cid"], obj["sdp"]
            if not (isinstance(cid, str) and isinstance(sdp, str) and len(cid) <= MAX_CID_CHARS):
                raise ValueError("bad field types")
        except Exception as exc:  # a relayed payload is untrusted input
            log.debug("dropping a bad relayed signal from %s: %s", short_id(source), exc)
            return
        log.debug("relayed %s from %s (cid %s)", kind, short_id(source), cid)
        if kind == "offer":
            self._tasks.spawn(self.on_offer(source, cid, sdp))
        elif kind == "answer":
            self.on_answer(source, cid, sdp)

    def on_answer(self, sender: NodeId, cid: str, sdp: str) -> None:
        """The answer to one of our offers (ignored unless ``cid`` and ``sender`` match)."""
        dial = self._offers.get(cid)
        if dial is None or dial.peer != sender or dial.answer is None or dial.answer.done():
            return
        dial.answer.set_result(sdp)

    async def on_offer(self, sender: NodeId, cid: str, sdp: str) -> None:
        """An offer from ``sender``: answer it (unless glare says our own offer wins)."""
        if sender == self.node_id or cid in self._seen_cids or self._closed or self._draining:
            return
        if self.banned(sender):  # refused before any ICE or DTLS work
            self.stats.offers_refused_banned += 1
            log.debug("offer from banned %s refused", short_id(sender))
            return
        self._seen_cids.append(cid)
        ours = self._dials.get(sender)
        if ours is not None and self.node_id < sender and not ours.superseded:
            log.debug("glare with %s: our offer wins", short_id(sender))
            return  # glare: our offer (sent or about to be) wins, the peer answers it
        if ours is not None:
            ours.superseded = True
            if ours.answer is not None and not ours.answer.done():
                ours.answer.set_result("")
        try:
            pending = await self.transport.accept_offer(sdp)
        except (TransportError, ValueError) as exc:
            log.debug("bad offer from %s: %s", short_id(sender), exc)
            return
        try:
            if not await self._send_sdp(sender, "answer", cid, pending.sdp, None):
                pending.cancel()
                return
            link = await pending.wait_open(self.dial_timeout_s)
        except (TransportError, OSError) as exc:
            log.debug("answering %s failed: %s", short_id(sender), exc)
            pending.cancel()
            return
        await self._handshake(link, sender, cid)

    # == HELLO ====================================================================================

    async def _handshake(self, link: Link, peer: NodeId, cid: str) -> bool:
        """Exchange signed HELLOs; register the peer when its HELLO verifies."""
        # The reason the link is refused, or None once the peer's HELLO verified.
        verified: asyncio.Future[str | None] = self._loop.create_future()
        early: list[bytes] = []
        last_problem = ""

        def on_message(data: bytes) -> None:
            nonlocal last_problem
            if verified.done():
                if verified.result() is None:
                    self._on_link_message(peer, link, data)
                return
            try:
                msg = codec.decode(data)
            except codec.DecodeError as exc:
                msg = None
                problem = f"undecodable first message ({exc})"
            else:
                problem = f"{type(msg).__name__} before HELLO"
            if not isinstance(msg, Hello):
                early.append(data)  # cannot happen on an ordered channel; keep it safe
                last_problem = problem
                if len(early) > MAX_EARLY_MESSAGES:
                    verified.set_result(f"{len(early)} messages without a HELLO: {problem}")
                return
            verified.set_result(self._hello_problem(msg, peer, cid))

        def on_close() -> None:
            if not verified.done():
                verified.set_result("the channel closed before the peer's HELLO")
            elif link.close_reason is CloseReason.LIVENESS_LOST:
                self._link_closed(peer, link, CloseReason.LIVENESS_LOST.value, lost=True)
            else:
                self._link_closed(peer, link, "closed")

        link.set_handlers(on_message, on_close)
        sig = self.identity.sign(hello_payload(peer, cid))
        hello = Hello(self.identity.public_key, peer, cid, sig, self.protocol_version)
        problem: str | None
        try:
            link.send(codec.encode(hello))
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                problem = await verified
        except TimeoutError:
            problem = f"no HELLO within {HELLO_TIMEOUT_S:.0f} s " + (
                f"({len(early)} other message(s), the last: {last_problem})"
                if early
                else "(is the peer's data channel the negotiated stream 0 or an in-band "
                "channel labelled 'dht'?)"
            )
        except TransportError as exc:
            problem = f"sending our HELLO failed: {exc}"
        if problem is not None:
            self.stats.hellos_rejected += 1
            log.info("link to %s dropped before HELLO (cid %s): %s", short_id(peer), cid, problem)
            link.close()
            return False
        return self._register(peer, link, cid)

    def _hello_problem(self, msg: Hello, peer: NodeId, cid: str) -> str | None:
        """Why the peer's HELLO is refused, or None when it verifies (``node.hello``)."""
        ours = self.protocol_version[0]
        if bad_version(msg, ours):
            self.stats.hellos_bad_version += 1
        return hello_problem(msg, peer, cid, self.node_id, ours)

    # == the peer table ===========================================================================

    def _register(self, peer: NodeId, link: Link, cid: str) -> bool:
        if self.banned(peer):  # banned while its link was being set up
            link.close()
            return False
        old = self._peers.get(peer)
        now = self._loop.time()
        self.stats.links_opened += 1
        self._peers[peer] = _Peer(peer, link, cid, now, now)
        if old is not None and old.link is not link:
            old.link.close()  # a reconnect (e.g. the peer restarted): the new link wins
        else:
            self.hooks.notify(PeerConnected(peer))
        self.hooks.link_up(peer)
        dial = self._dials.get(peer)
        if dial is not None and not dial.done.done() and dial.superseded:
            dial.done.set_result(True)
        self._flush(peer)
        self._enforce_cap()
        self._rewatch(fresh=peer)
        self.hooks.pump()
        return True

    def _on_link_message(self, peer: NodeId, link: Link, data: bytes) -> None:
        p = self._peers.get(peer)
        if p is None or p.link is not link or self._closed:
            return
        if not is_keepalive(data):
            p.last_used = self._loop.time()
        self.hooks.received(peer, data)

    def close(self, peer: NodeId, reason: str) -> bool:
        """Close the connection to ``peer``; False when there was none."""
        p = self._peers.get(peer)
        if p is None:
            return False
        self._link_closed(peer, p.link, reason)
        return True

    def _link_closed(self, peer: NodeId, link: Link, reason: str, lost: bool = False) -> None:
        p = self._peers.get(peer)
        link.close()
        if p is None or p.link is not link:
            return
        del self._peers[peer]
        self.stats.links_closed += 1
        self._rewatch()
        self.hooks.notify(PeerDisconnected(peer, reason))
        if self._closed:
            return
        if lost:
            self.hooks.link_lost(peer)
        else:
            self.hooks.link_down(peer)

    def _rewatch(self, fresh: NodeId | None = None) -> None:
        """Only the ``min_links`` closest links (the neighbourhood the budget keeps) are probed
        when idle: a dead neighbour is noticed within the liveness deadline, while the other
        links cost nothing until used — a dead peer behind one is noticed when a request to it
        fails, and the idle sweep closes it. Idle cost so follows ``min_links``, not the number
        of peers a node ever talked to."""
        own = as_int(self.node_id)
        closest = sorted(self._peers, key=lambda p: as_int(p) ^ own)[: self.budget.min_links]
        watched = set(closest)
        changed = watched ^ self._watched
        if fresh is not None:
            changed.add(fresh)  # a new link: told either way (transports start out watching)
        for peer in changed:
            p = self._peers.get(peer)
            if p is not None:
                p.link.watch(peer in watched)
        self._watched = watched

    def _enforce_cap(self) -> None:
        if len(self._peers) > self.budget.max_links:
            self._apply_budget(Budget(self.budget.max_links, self.budget.min_links, 0.0))

    def sweep(self) -> int:
        """Close the links the budget does not keep (idle ones); how many were closed."""
        return self._apply_budget(self.budget)

    def _apply_budget(self, budget: Budget) -> int:
        now = self._loop.time()
        uses = [LinkUse(p.id, p.last_used) for p in self._peers.values()]
        idle_before = now - budget.idle_s
        closed = 0
        for peer in links_to_close(uses, self.node_id, now, budget, self.hooks.needed):
            p = self._peers.get(peer)
            if p is None:
                continue
            if budget.idle_s > 0 and p.last_used <= idle_before:
                self.stats.links_closed_idle += 1
                reason = "idle"
            else:
                self.stats.connections_evicted += 1
                reason = "connection cap"
            self._link_closed(p.id, p.link, reason)
            closed += 1
        return closed

    # == shutdown =================================================================================

    def drain(self) -> None:
        """We are leaving: open links stay (for the BYEs) but no new one is dialed or answered,
        so a peer that already dropped us cannot bring us back into its table."""
        self._draining = True

    async def close_all(self) -> None:
        """Stop dialing and answering, resolve every dial (False), close every link."""
        self._closed = True
        await self._tasks.cancel_all()
        for d in list(self._dials.values()):
            if not d.done.done():
                d.done.set_result(False)
        for p in list(self._peers.values()):
            p.link.close()
