# Over 600 lines: one link type and the aiortc connection setup it owns (offer, answer, ICE).
"""WebRTC transport: one aiortc peer connection with one data channel per link.

Theory of operation
-------------------
* The offerer creates an ``RTCPeerConnection`` and a data channel labelled ``dht`` with
  ``negotiated=True, id=0`` (reliable, ordered). Both sides create that same channel themselves,
  so no DCEP OPEN/ACK exchange is needed: each side's channel opens the moment the SCTP
  association is up, the answerer does not depend on a ``datachannel`` event, and data sent by
  the offerer right after "open" can never race the answerer's channel registration.
* aiortc gathers ICE candidates completely inside ``setLocalDescription`` (no trickle ICE), so the
  offer and answer strings are complete SDP documents that travel in one signaling message each.
* ``iceServers=[]`` unless STUN/TURN URLs are configured: aiortc would otherwise add a public
  Google STUN server.

Meeting browsers halfway (answerer side)
----------------------------------------
A browser's default ``createDataChannel("dht")`` is an in-band (DCEP) channel on another stream
(normally 1), not the negotiated stream 0. The answerer opens its negotiated channel when SCTP
comes up, as before, but until the first message arrives on it, it keeps a copy of what it wrote
(the HELLO; at most ``REPLAY_MAX_MESSAGES``). If instead the peer opens an in-band channel
labelled ``dht``, that channel replaces the negotiated one and the copies are sent again on it
(a browser drops what arrived on a stream it has no channel for). Remote SDP goes through
``node.transport.sdp`` first, which drops mDNS ``.local`` candidates (browsers' default) so
aioice does not block ~1 s resolving them.

ICE address adaptation (the one place it lives)
-----------------------------------------------
aioice 0.13 chooses host-candidate addresses in ``aioice.ice.get_host_addresses`` and skips
127.0.0.1, so a loopback-only host gets no candidates and never connects.
``_install_aioice_hooks`` replaces that module attribute (``Connection.gather_candidates`` looks
it up by name at call time) with a wrapper that returns the addresses of the *calling*
transport. The addresses travel in a ``ContextVar`` set around ``setLocalDescription``: aiortc
gathers inside that call, in tasks that inherit the caller's context, so several transports with
different address lists can live in one process, and any other aiortc user in the process (no
context value set) sees aioice's own behaviour. The hook is installed once per process and never
removed.

The same hook raises the UDP receive buffer: aioice sets ``SO_RCVBUF`` on every host socket to
``aioice.turn.UDP_SOCKET_BUFFER_SIZE`` (256 KiB); the hook raises that module constant to
``UDP_RECEIVE_BUFFER_BYTES``. The kernel silently caps it at ``net.core.rmem_max``; the first
connection reads the effective size back and logs once when it was capped.

Both adaptations were written against aioice 0.13.x; another version logs a warning (and the hook
refuses to install, raising ``TransportError``, if the function it replaces is gone).

SCTP packet economy and liveness
--------------------------------
Every association is adapted by ``node.transport.sctp_adapter`` (bundling, delayed SACKs,
HEARTBEAT probes of silent links; read its docstring) unless the transport is made with
``sctp_economy=False`` (the benchmark's ``--plain`` baseline). Once a link is open, aioice's
consent checks (a STUN request every ~5 s, RFC 7675) are stopped on it: the association's
HEARTBEAT is the one probe of an idle link. We still answer the peer's consent requests.

Closing
-------
``Link.close()`` marks the link closed at once, schedules ``on_close`` and closes the peer
connection in a task owned by the transport; the peer learns through the SCTP ABORT and its
channel's ``close`` event. A peer that vanishes without closing (SIGKILL) is noticed by the
liveness probe: after ``LivenessTiming.dead_after_s`` (10 s) of silence the link ends with
``CloseReason.LIVENESS_LOST``.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import socket
import urllib.parse
from collections.abc import Sequence
from typing import Any

import aioice
import aioice.ice
import aioice.turn
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcicetransport import parse_stun_turn_uri

from node.transport import ice_checks
from node.transport.base import (
    BUFFERED_AMOUNT_LOW_BYTES,
    CloseReason,
    DialFailed,
    LinkBase,
    LinkClosed,
    MessageTooLarge,
    TransportError,
)
from node.transport.ice_path import (
    CandidateView,
    LinkPath,
    classify,
    failure_reason,
    sdp_candidate_types,
)
from node.transport.sctp_adapter import EconomySctpTransport, LivenessTiming, adapt, check_aiortc
from node.transport.sdp import strip_mdns_candidates

logger = logging.getLogger(__name__)

#: The aioice release line the hooks below were written for.
AIOICE_SUPPORTED_PREFIX = "0.13."
#: Requested SO_RCVBUF for ICE sockets (best effort: capped by net.core.rmem_max).
UDP_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
#: Label and SCTP stream id of the single data channel per connection.
CHANNEL_LABEL = "dht"
CHANNEL_ID = 0
#: Longest offer/answer string accepted (a complete SDP with a few candidates is ~1 KiB).
MAX_SDP_BYTES = 16 * 1024
#: Messages an answerer keeps for a resend on an in-band channel (the HELLO is the first one).
REPLAY_MAX_MESSAGES = 4
#: Messages held for a link whose handlers are not set yet; beyond this the link is closed.

_ICE_SCHEMES = ("stun", "stuns", "turn", "turns")

# The ICE host addresses of the transport that is currently gathering (see module docstring).
_ice_addresses_var: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "webrtc_dht_ice_addresses", default=None
)
_hooks_installed = False
_rcvbuf_checked = False


def _quiet_library_loggers() -> None:
    """aiortc/aioice log every state change at INFO; keep them at WARNING unless configured."""
    for name in ("aiortc", "aioice"):
        lib_logger = logging.getLogger(name)
        if lib_logger.level == logging.NOTSET:
            lib_logger.setLevel(logging.WARNING)


def _install_aioice_hooks() -> None:
    """Install the host-address hook and the receive-buffer size, once per process."""
    global _hooks_installed
    if _hooks_installed:
        return
    version = getattr(aioice, "__version__", "unknown")
    if not str(version).startswith(AIOICE_SUPPORTED_PREFIX):
        logger.warning(
            "aioice %s: the ICE address hook was written for aioice %sx",
            version,
            AIOICE_SUPPORTED_PREFIX,
        )
    original = getattr(aioice.ice, "get_host_addresses", None)
    if original is None or not callable(original):
        raise TransportError(
            f"aioice {version} has no ice.get_host_addresses; cannot restrict ICE addresses"
        )

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        configured = _ice_addresses_var.get()
        if not configured:
            result: list[str] = original(use_ipv4, use_ipv6)
            return result
        chosen: list[str] = []
        for address in configured:
            is_v6 = ipaddress.ip_address(address).version == 6
            if (is_v6 and use_ipv6) or (not is_v6 and use_ipv4):
                chosen.append(address)
        return chosen

    aioice.ice.get_host_addresses = get_host_addresses
    ice_checks.install()
    if getattr(aioice.turn, "UDP_SOCKET_BUFFER_SIZE", 0) < UDP_RECEIVE_BUFFER_BYTES:
        aioice.turn.UDP_SOCKET_BUFFER_SIZE = UDP_RECEIVE_BUFFER_BYTES
    _hooks_installed = True


def _check_receive_buffer(pc: RTCPeerConnection) -> None:
    """Once per process, read SO_RCVBUF back from an ICE socket and log when it was capped."""
    global _rcvbuf_checked
    if _rcvbuf_checked:
        return
    _rcvbuf_checked = True
    sctp = pc.sctp
    if sctp is None:
        return
    try:
        protocols = sctp.transport.transport.iceGatherer._connection._protocols
        sockets = [p.transport.get_extra_info("socket") for p in protocols]
    except AttributeError:
        logger.debug("cannot reach the ICE sockets to check SO_RCVBUF")
        return
    for sock in sockets:
        if sock is None:
            continue
        effective = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        # Linux reports twice the requested size (it counts bookkeeping overhead).
        if effective < UDP_RECEIVE_BUFFER_BYTES:
            logger.warning(
                "UDP receive buffer capped at %d bytes (asked %d; raise net.core.rmem_max)",
                effective,
                UDP_RECEIVE_BUFFER_BYTES,
            )
        return


def _ice_connection(pc: RTCPeerConnection) -> Any:
    """aioice's ``Connection`` behind ``pc`` (None before SCTP/ICE exist)."""
    try:
        return pc.sctp.transport.transport.iceGatherer._connection  # type: ignore[union-attr]
    except AttributeError:
        return None


def _view(candidate: Any) -> CandidateView:
    return CandidateView(candidate.type, candidate.host, candidate.related_address)


def selected_path(pc: RTCPeerConnection) -> LinkPath | None:
    """The path of the nominated ICE pair (``node.transport.ice_path``); None when unknown."""
    connection = _ice_connection(pc)
    try:
        pair = connection._nominated.get(1) if connection is not None else None
        if pair is None:
            return None
        local = [_view(c) for c in connection.local_candidates]
        return classify(_view(pair.local_candidate), _view(pair.remote_candidate), local)
    except AttributeError:
        logger.debug("cannot read aioice's selected pair")
        return None


def _stop_consent_checks(pc: RTCPeerConnection) -> None:
    """Cancel aioice's consent-freshness task on an open connection (see the module docstring)."""
    try:
        connection = pc.sctp.transport.transport.iceGatherer._connection  # type: ignore[union-attr]
        task = connection._query_consent_task
    except AttributeError:
        logger.warning("cannot reach aioice's consent task: idle links keep two probes")
        return
    if task is not None:
        task.cancel()
        connection._query_consent_task = None


def parse_ice_server(url: str) -> RTCIceServer:
    """Turn ``stun:host[:port]`` or ``turn:user:pass@host[:port][?transport=udp]`` into an
    ``RTCIceServer``; raise ``ValueError`` with the reason for anything else."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in _ICE_SCHEMES:
        raise ValueError(f"ICE server {url!r}: scheme must be one of {', '.join(_ICE_SCHEMES)}")
    username: str | None = None
    credential: str | None = None
    if "@" in rest:
        if scheme.lower() in ("stun", "stuns"):
            raise ValueError(f"ICE server {url!r}: STUN URLs carry no credentials")
        userinfo, _, rest = rest.rpartition("@")
        user, has_password, password = userinfo.partition(":")
        if not user or not has_password:
            raise ValueError(f"ICE server {url!r}: credentials must be user:password@")
        username = urllib.parse.unquote(user)
        credential = urllib.parse.unquote(password)
    bare = f"{scheme.lower()}:{rest}"
    try:
        parse_stun_turn_uri(bare)
    except ValueError as exc:
        raise ValueError(f"ICE server {url!r}: {exc}") from exc
    return RTCIceServer(urls=bare, username=username, credential=credential)


class WebRTCLink(LinkBase):
    """One open (or opening) data channel and the peer connection that carries it."""

    _label = "data channel"

    def __init__(self, owner: WebRTCTransport, pc: RTCPeerConnection, offerer: bool) -> None:
        super().__init__()
        self._owner = owner
        self._pc = pc
        self._offerer = offerer
        self._sctp: EconomySctpTransport | None = None
        self._channel: RTCDataChannel | None = None
        # Answerer, until the peer's first message: what we wrote (see "Meeting browsers halfway").
        self._replay: list[bytes] | None = None
        pc.on("connectionstatechange", self._on_connection_state)

    def adapt_sctp(self) -> None:
        """Give this connection's SCTP association the packet economy (before it starts)."""
        if self._owner._sctp_economy and self._pc.sctp is not None:
            self._sctp = adapt(self._pc.sctp)

    # --- setup ------------------------------------------------------------------------------

    def attach_channel(self, channel: RTCDataChannel, answerer: bool = False) -> None:
        self._channel = channel
        if answerer:
            self._replay = []
        channel.bufferedAmountLowThreshold = BUFFERED_AMOUNT_LOW_BYTES
        channel.on("open", self._on_channel_open)
        channel.on("message", self._on_channel_message)
        channel.on("close", self._on_channel_close)
        channel.on("bufferedamountlow", self._on_buffered_amount_low)
        if channel.readyState == "open":
            self._on_channel_open()

    async def wait_open(self, timeout_s: float) -> WebRTCLink:
        await self._wait_open(timeout_s)
        return self

    def on_inband_channel(self, channel: RTCDataChannel) -> None:
        """A DCEP-opened channel from the peer: adopt it if it is the first ``dht`` channel."""
        replay = self._replay
        if channel.label != CHANNEL_LABEL or replay is None or self._closed:
            logger.info(
                "ignoring an in-band data channel %r (stream %s)", channel.label, channel.id
            )
            return
        self._replay = None
        old = self._channel
        if old is not None:
            old.remove_all_listeners()
        logger.debug("peer opened an in-band 'dht' channel (stream %s)", channel.id)
        self.attach_channel(channel)
        try:
            for data in replay:
                channel.send(data)
        except ValueError as exc:  # above the peer's max-message-size
            logger.warning("cannot resend on the in-band channel: %s", exc)

    # --- Link -------------------------------------------------------------------------------

    # --- internals --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            raise LinkClosed("data channel is not open")
        try:
            channel.send(data)
        except ValueError as exc:  # above the max-message-size the peer advertised
            raise MessageTooLarge(str(exc)) from exc
        replay = self._replay
        if replay is not None:
            replay.append(data)
            if len(replay) > REPLAY_MAX_MESSAGES:
                self._replay = None  # not a HELLO-first peer; stay on the negotiated channel

    def _on_buffered_amount_low(self) -> None:
        """The channel drained to the low-water mark: move queued messages to it."""
        while not self._closed:
            try:
                self._queue.drain()
            except MessageTooLarge as exc:
                logger.warning("dropping a queued message: %s", exc)
                continue
            except LinkClosed:
                self._shutdown("channel closed while draining")
            return

    def _buffered_amount(self) -> int:
        return self._channel.bufferedAmount if self._channel is not None else 0

    @property
    def path(self) -> LinkPath | None:
        """The selected pair's path, read live: ICE may settle on a better pair after open."""
        if not self.is_open:
            return None
        return selected_path(self._pc)

    def _on_channel_open(self) -> None:
        if not self._mark_open():
            return
        _check_receive_buffer(self._pc)
        timing = self._owner._liveness
        if self._sctp is not None and timing is not None:
            self._sctp.start_liveness(timing, self._offerer, self._on_liveness_lost)
            _stop_consent_checks(self._pc)

    def watch(self, watched: bool) -> None:
        super().watch(watched)
        if self._sctp is not None:
            self._sctp.watch(watched)

    def _on_liveness_lost(self) -> None:
        timing = self._owner._liveness
        silent_s = timing.dead_after_s if timing is not None else 0.0
        self._shutdown(f"nothing heard for {silent_s:.1f} s", CloseReason.LIVENESS_LOST)

    def _on_channel_message(self, data: bytes | str) -> None:
        if self._closed:
            return
        if isinstance(data, str):
            logger.debug("dropping a text message (%d chars): the protocol is binary", len(data))
            return
        self._replay = None  # the peer uses this channel: never switch any more
        self._receive(data)

    def _on_channel_close(self) -> None:
        self._shutdown("channel closed")

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "failed" and not self._opened.done():
            self._shutdown(f"connection failed: {self.diagnose()}")
        elif state in ("failed", "closed"):
            self._shutdown(f"connection {state}")

    def diagnose(self) -> str:
        """Which candidates each side had (``ice_path.failure_reason``); "" once open."""
        if self.is_open:
            return ""
        connection = _ice_connection(self._pc)
        local = [c.type for c in connection.local_candidates] if connection is not None else []
        remote = self._pc.remoteDescription
        remote_types = sdp_candidate_types(remote.sdp) if remote is not None else []
        if remote is None:
            return "no answer applied yet"
        return failure_reason(local, remote_types, self._owner._ice_server_urls)

    def _release(self, reason: str) -> None:
        if self._sctp is not None:
            self._sctp.stop_liveness()
        self._owner._release(self)

    async def _close_pc(self) -> None:
        await self._pc.close()


class WebRTCPendingOffer:
    def __init__(self, link: WebRTCLink, sdp: str) -> None:
        self.sdp = sdp
        self._link = link
        self._answered = False

    async def accept_answer(self, sdp: str) -> None:
        if self._answered:
            raise DialFailed("an answer was already applied to this offer")
        if self._link._closed:
            raise DialFailed("the dial was cancelled or has failed")
        description = _checked_description(sdp, "answer")
        try:
            await self._link._pc.setRemoteDescription(description)
        except Exception as exc:  # aiortc raises ValueError/InvalidStateError/... on bad SDP
            self._link.close()
            raise DialFailed(f"cannot apply answer: {exc}") from exc
        self._answered = True

    async def wait_open(self, timeout_s: float) -> WebRTCLink:
        return await self._link.wait_open(timeout_s)

    def cancel(self) -> None:
        self._link.close()

    def diagnose(self) -> str:
        return self._link.diagnose()


class WebRTCPendingAnswer:
    def __init__(self, link: WebRTCLink, sdp: str) -> None:
        self.sdp = sdp
        self._link = link

    async def wait_open(self, timeout_s: float) -> WebRTCLink:
        return await self._link.wait_open(timeout_s)

    def cancel(self) -> None:
        self._link.close()


def _checked_description(sdp: str, kind: str) -> RTCSessionDescription:
    if not isinstance(sdp, str) or not sdp.strip():
        raise DialFailed(f"empty {kind}")
    if len(sdp) > MAX_SDP_BYTES:
        raise DialFailed(f"{kind} of {len(sdp)} chars exceeds MAX_SDP_BYTES={MAX_SDP_BYTES}")
    if not sdp.startswith("v=0"):
        raise DialFailed(f"{kind} is not an SDP document")
    sdp, dropped = strip_mdns_candidates(sdp)
    if dropped:
        logger.debug("%s: dropped %d mDNS candidate(s); relying on peer-reflexive", kind, dropped)
    return RTCSessionDescription(sdp=sdp, type=kind)


class WebRTCTransport:
    """The aiortc implementation of ``node.transport.base.Transport``.

    ``ice_addresses``: the host addresses ICE gathers on (default loopback only; empty means
    aioice's own interface discovery, which skips loopback). ``ice_servers``: ``stun:``/``turn:``
    URLs, ``turn:user:pass@host:port`` carrying TURN credentials. ``sctp_economy``: adapt each
    association (``node.transport.sctp_adapter``); False is aiortc as shipped, for comparison.
    ``liveness``: when silent links are probed and declared lost (None: never, and aioice's
    consent checks stay on).
    """

    def __init__(
        self,
        ice_addresses: Sequence[str] = ("127.0.0.1",),
        ice_servers: Sequence[str] = (),
        sctp_economy: bool = True,
        liveness: LivenessTiming | None = LivenessTiming(),  # noqa: B008 (frozen, immutable)
    ) -> None:
        addresses: list[str] = []
        for address in ice_addresses:
            try:
                addresses.append(str(ipaddress.ip_address(address)))
            except ValueError:
                raise ValueError(f"ICE address {address!r} is not an IP address") from None
        self._ice_addresses = tuple(addresses)
        self._ice_servers = [parse_ice_server(url) for url in ice_servers]
        #: Scheme and host only (no credentials): what failure reasons may mention.
        self._ice_server_urls = [str(server.urls) for server in self._ice_servers]
        self._links: set[WebRTCLink] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._sctp_economy = sctp_economy
        self._liveness = liveness if sctp_economy else None
        #: The Transport capability: dead peers end their links with LIVENESS_LOST.
        self.provides_liveness = self._liveness is not None
        _quiet_library_loggers()
        _install_aioice_hooks()
        if sctp_economy:
            check_aiortc()

    def _new_pc(self) -> RTCPeerConnection:
        if self._closed:
            raise TransportError("transport is closed")
        return RTCPeerConnection(RTCConfiguration(iceServers=list(self._ice_servers)))

    async def _set_local(self, pc: RTCPeerConnection, description: RTCSessionDescription) -> str:
        token = _ice_addresses_var.set(self._ice_addresses)
        try:
            await pc.setLocalDescription(description)
        finally:
            _ice_addresses_var.reset(token)
        local = pc.localDescription
        assert local is not None
        sdp: str = local.sdp
        if "a=candidate:" not in sdp:
            raise DialFailed(f"ICE gathered no candidates on {list(self._ice_addresses)}")
        return sdp

    async def create_offer(self) -> WebRTCPendingOffer:
        pc = self._new_pc()
        link = WebRTCLink(self, pc, offerer=True)
        self._links.add(link)
        try:
            channel = pc.createDataChannel(
                CHANNEL_LABEL, ordered=True, negotiated=True, id=CHANNEL_ID
            )
            link.adapt_sctp()
            link.attach_channel(channel)
            sdp = await self._set_local(pc, await pc.createOffer())
        except BaseException:
            link.close()
            raise
        return WebRTCPendingOffer(link, sdp)

    async def accept_offer(self, sdp: str) -> WebRTCPendingAnswer:
        description = _checked_description(sdp, "offer")
        pc = self._new_pc()
        link = WebRTCLink(self, pc, offerer=False)
        self._links.add(link)
        pc.on("datachannel", link.on_inband_channel)
        try:
            try:
                await pc.setRemoteDescription(description)
            except Exception as exc:  # aiortc raises assorted errors on bad SDP
                raise DialFailed(f"cannot apply offer: {exc}") from exc
            if pc.sctp is None:
                raise DialFailed("offer has no data channel (m=application) section")
            link.adapt_sctp()
            channel = pc.createDataChannel(
                CHANNEL_LABEL, ordered=True, negotiated=True, id=CHANNEL_ID
            )
            link.attach_channel(channel, answerer=True)
            answer_sdp = await self._set_local(pc, await pc.createAnswer())
        except BaseException:
            link.close()
            raise
        return WebRTCPendingAnswer(link, answer_sdp)

    def _release(self, link: WebRTCLink) -> None:
        """Called once per link when it shuts down: close its peer connection in a task."""
        self._links.discard(link)
        task = link._loop.create_task(link._close_pc())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @property
    def open_connections(self) -> int:
        """Diagnostics: peer connections not yet shut down (pending dials included)."""
        return len(self._links)

    async def close(self) -> None:
        self._closed = True
        for link in list(self._links):
            link.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> WebRTCTransport:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
