"""SCTP packet economy and association liveness for aiortc's ``RTCSctpTransport``.

Why
---
aiortc 1.16 sends **one SCTP chunk per packet** and answers **every DATA packet with its own SACK
packet**: one request/response costs four DTLS records, four UDP datagrams and four process
wake-ups, and a burst of small messages costs one datagram per message plus one SACK each.
On top of that, an idle link was probed twice (aioice consent checks every ~5 s and the DHT's
PING every 4 s of silence). This module is the one place where aiortc's SCTP behaviour is changed.

What changes (only for the associations :func:`adapt` is applied to; RFC 4960 / RFC 9260)
------------------------------------------------------------------------------------------
* **Bundling** (§6.10): chunks queued while handling one event (an incoming packet, a flush of
  the data-channel queue, a timer) are collected and sent as few packets as possible, each at
  most ``MAX_PACKET_BYTES`` (aiortc's own ``SCTP_MAX_PACKET_LENGTH``, which keeps DTLS+UDP inside
  the minimum IPv6 MTU). Several small DATA chunks share one packet; control chunks that must
  stand alone (INIT, INIT ACK, COOKIE ECHO/ACK, SHUTDOWN*, ABORT, ERROR, RE-CONFIG) flush what is
  collected and go out alone, as before.
* **SACK bundled with DATA**: when a DATA chunk (or a HEARTBEAT) is about to be sent and a SACK is
  owed, the SACK goes first in the same packet instead of in a packet of its own.
* **Delayed acknowledgement** (§6.2): a SACK is sent at once for every second packet carrying
  DATA, for a packet that shows or fills a gap or brings a duplicate (§6.7: fast retransmit and
  recovery are not slowed down), for a FORWARD TSN, and outside the ESTABLISHED state;
  otherwise within ``DELAYED_SACK_S`` (40 ms, the RFC allows 200 ms) unless it rode out earlier
  on outgoing DATA. In a request/response exchange the answer carries the SACK of the request:
  two datagrams per round trip, not four.
* **Liveness** (:meth:`EconomySctpTransport.start_liveness`): every packet received from the
  peer counts as a sign of life. After ``probe_after_s`` of silence the association sends one
  HEARTBEAT (which the peer answers with a HEARTBEAT ACK), at most one per ``probe_after_s``;
  after ``dead_after_s`` without anything heard the owner's ``on_lost`` is called. A link that
  carries traffic sends no probe at all, and the check timer fires at most once per
  ``probe_after_s`` per association whatever the traffic. The offerer probes after
  ``probe_after_s``; the answerer after ``ANSWERER_PROBE_FACTOR`` times that, so between two of
  our nodes only the offerer's probes travel (the answerer hears them before its own deadline),
  and an answerer whose offerer never probes (a browser) still probes itself. A check that runs
  late (this process was starved of CPU) never declares the peer lost: it probes and gives the
  peer one more ``probe_after_s``.

Retransmission (T3, fast retransmit), congestion control, flow control and ordering are aiortc's
own code, unchanged: only the packetisation of what it sends and the timing of its SACKs differ.

How it is applied
-----------------
:func:`adapt` swaps the class of one ``RTCSctpTransport`` *instance* to
:class:`EconomySctpTransport` before its association starts. Other aiortc users in the process
are not affected, and the benchmark's ``--plain`` mode simply does not call it. The subclass
overrides private aiortc methods, so :func:`check_aiortc` refuses (``TransportError``) any aiortc
outside ``AIORTC_SUPPORTED_PREFIX`` or one lacking a method it relies on: a new aiortc must be
re-checked against this file, not silently half-patched.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import aiortc
from aiortc import rtcsctptransport
from aiortc.rtcsctptransport import (
    SCTP_MAX_PACKET_LENGTH,
    Chunk,
    DataChunk,
    ForwardTsnChunk,
    HeartbeatAckChunk,
    HeartbeatChunk,
    InitChunk,
    RTCSctpTransport,
    SackChunk,
    parse_packet,
)

from node.transport.base import TransportError

logger = logging.getLogger(__name__)

#: The aiortc release line this module was written and tested against.
AIORTC_SUPPORTED_PREFIX = "1.16."
#: Private ``RTCSctpTransport`` members the subclass overrides or reads.
_REQUIRED_MEMBERS = (
    "_handle_data",
    "_receive_chunk",
    "_send_chunk",
    "_send_sack",
    "_data_channel_flush",
    "_association_state",
    "_sack_needed",
    "_sack_misordered",
    "_sack_duplicates",
    "_local_port",
    "_remote_port",
    "_remote_verification_tag",
    "_local_verification_tag",
)

#: Largest SCTP packet (common header included) this module builds.
MAX_PACKET_BYTES = SCTP_MAX_PACKET_LENGTH
#: Longest a SACK waits for outgoing DATA to ride on (RFC 4960 §6.2 allows up to 200 ms).
DELAYED_SACK_S = 0.040
#: A SACK is sent at once for this many received packets carrying DATA.
SACK_EVERY_PACKETS = 2
#: Default silence after which the offerer probes the association with a HEARTBEAT (the idle
#: cost of a link: 3 s cost an idle 25-peer cluster 0.11-0.13 cores, 4 s 0.085-0.09).
PROBE_AFTER_S = 4.0
#: Default silence after which the association is declared lost.
DEAD_AFTER_S = 10.0
#: The answerer waits this many times longer than the offerer before probing itself.
ANSWERER_PROBE_FACTOR = 1.5
#: A liveness check that runs this much later than planned (this process was starved of CPU)
#: does not declare the peer lost: the peer gets one more probe interval.
STARVED_S = 0.5
#: HEARTBEAT parameter type "Heartbeat Info" (RFC 4960 §3.3.5).
_HEARTBEAT_INFO = 1
_COMMON_HEADER_BYTES = 12

# Chunks that may share a packet with others (the rest are sent alone, as aiortc does).
_BUNDLED = (DataChunk, SackChunk, ForwardTsnChunk, HeartbeatChunk, HeartbeatAckChunk)
_crc32c = cast(Callable[[bytes], int], getattr(rtcsctptransport, "crc32c", None))


def check_aiortc() -> None:
    """Raise ``TransportError`` unless the installed aiortc is one this module was written for."""
    version = str(getattr(aiortc, "__version__", "unknown"))
    if not version.startswith(AIORTC_SUPPORTED_PREFIX):
        raise TransportError(
            f"aiortc {version}: node/transport/sctp_adapter.py was written for aiortc "
            f"{AIORTC_SUPPORTED_PREFIX}x; re-check its overrides before allowing this version"
        )
    probe = RTCSctpTransport.__dict__
    init_names = RTCSctpTransport.__init__.__code__.co_names
    missing = [m for m in _REQUIRED_MEMBERS if m not in probe and m not in init_names]
    if _crc32c is None:
        missing.append("crc32c")
    if missing:
        raise TransportError(f"aiortc {version} lacks {', '.join(missing)}: cannot adapt SCTP")


@dataclass(frozen=True, slots=True)
class LivenessTiming:
    """When an association probes its peer and when it gives up (seconds of silence)."""

    probe_after_s: float = PROBE_AFTER_S
    dead_after_s: float = DEAD_AFTER_S

    def __post_init__(self) -> None:
        if not 0 < self.probe_after_s < self.dead_after_s:
            raise ValueError(
                f"liveness needs 0 < probe_after_s ({self.probe_after_s}) "
                f"< dead_after_s ({self.dead_after_s})"
            )


class EconomySctpTransport(RTCSctpTransport):
    """``RTCSctpTransport`` with bundling, delayed SACKs and HEARTBEAT liveness.

    Instances are made by :func:`adapt` (class swap), never constructed directly; the extra
    state is set up by :meth:`_economy_init`.
    """

    _econ_loop: asyncio.AbstractEventLoop
    _econ_pending: list[bytes]
    _econ_pending_bytes: int
    _econ_flush_scheduled: bool
    _econ_tasks: set[asyncio.Task[None]]
    _econ_data_packets: int
    _econ_sack_timer: asyncio.TimerHandle | None
    _econ_heard_at: float
    _econ_probed_at: float
    _econ_probe_after_s: float
    _econ_dead_after_s: float
    _econ_liveness_timer: asyncio.TimerHandle | None
    _econ_check_at: float
    _econ_granted_at: float
    _econ_on_lost: Callable[[], None] | None
    _econ_watched: bool
    #: Diagnostics: SCTP packets sent, HEARTBEATs sent.
    packets_sent: int
    probes_sent: int

    def _economy_init(self) -> None:
        self._econ_loop = asyncio.get_running_loop()
        self._econ_pending = []
        self._econ_pending_bytes = 0
        self._econ_flush_scheduled = False
        self._econ_tasks = set()
        self._econ_data_packets = 0
        self._econ_sack_timer = None
        self._econ_heard_at = self._econ_loop.time()
        self._econ_probed_at = float("-inf")
        self._econ_probe_after_s = 0.0
        self._econ_dead_after_s = 0.0
        self._econ_liveness_timer = None
        self._econ_check_at = 0.0
        self._econ_granted_at = -1.0
        self._econ_on_lost = None
        self._econ_watched = True
        self.packets_sent = 0
        self.probes_sent = 0

    # --- receiving --------------------------------------------------------------------------

    async def _handle_data(self, data: bytes) -> None:
        """aiortc's ``_handle_data`` with the SACK decision of RFC 4960 §6.2 and a final flush."""
        try:
            _, _, verification_tag, chunks = parse_packet(data)
        except ValueError:
            return
        if any(isinstance(c, InitChunk) for c in chunks):
            if len(chunks) != 1:
                return  # an INIT must travel alone (aiortc asserts; a bad peer must not crash us)
            expected_tag = 0
        else:
            expected_tag = self._local_verification_tag
        if verification_tag != expected_tag:
            return
        self._econ_heard_at = self._econ_loop.time()
        had_gap = bool(self._sack_misordered)
        carries_data = False
        for chunk in chunks:
            carries_data = carries_data or isinstance(chunk, DataChunk)
            await self._receive_chunk(chunk)
        if self._sack_needed:
            if carries_data:
                self._econ_data_packets += 1
            if (
                not carries_data
                or self._econ_data_packets >= SACK_EVERY_PACKETS
                or had_gap
                or self._sack_misordered
                or self._sack_duplicates
                or self._association_state != self.State.ESTABLISHED
            ):
                await self._send_sack()
            elif self._econ_sack_timer is None:
                loop = self._econ_loop
                self._econ_sack_timer = loop.call_later(DELAYED_SACK_S, self._econ_sack_due)
        await self._econ_flush()

    def _econ_sack_due(self) -> None:
        self._econ_sack_timer = None
        if self._sack_needed:
            self._econ_spawn(self._econ_send_delayed_sack())

    async def _econ_send_delayed_sack(self) -> None:
        if self._sack_needed:
            await self._send_sack()
        await self._econ_flush()

    # --- sending ----------------------------------------------------------------------------

    async def _send_sack(self) -> None:
        if self._econ_sack_timer is not None:
            self._econ_sack_timer.cancel()
            self._econ_sack_timer = None
        self._econ_data_packets = 0
        await super()._send_sack()

    async def _send_chunk(self, chunk: Chunk) -> None:
        """Collect a bundleable chunk into the pending packet; send any other chunk alone."""
        if not isinstance(chunk, _BUNDLED) or self._association_state != self.State.ESTABLISHED:
            await self._econ_flush()
            self.packets_sent += 1
            await super()._send_chunk(chunk)
            return
        if self._sack_needed and isinstance(chunk, DataChunk | HeartbeatChunk):
            await self._send_sack()  # comes back here as a SackChunk, ahead of this chunk
        encoded = bytes(chunk)
        budget = MAX_PACKET_BYTES - _COMMON_HEADER_BYTES
        if self._econ_pending and self._econ_pending_bytes + len(encoded) > budget:
            await self._econ_flush()
        self._econ_pending.append(encoded)
        self._econ_pending_bytes += len(encoded)
        if not self._econ_flush_scheduled:
            # Safety net for paths without an explicit flush (T3 retransmission): normally the
            # flush at the end of the current event has emptied the packet before this runs.
            self._econ_flush_scheduled = True
            self._econ_loop.call_soon(self._econ_flush_soon)

    async def _data_channel_flush(self) -> None:
        await super()._data_channel_flush()
        await self._econ_flush()

    async def _econ_flush(self) -> None:
        """Send the collected chunks as one packet."""
        if not self._econ_pending:
            return
        body = b"".join(self._econ_pending)
        self._econ_pending = []
        self._econ_pending_bytes = 0
        header = struct.pack(
            "!HHL", self._local_port, self._remote_port, self._remote_verification_tag
        )
        checksum = _crc32c(header + b"\x00\x00\x00\x00" + body)
        self.packets_sent += 1
        await self.transport._send_data(header + struct.pack("<L", checksum) + body)

    def _econ_flush_soon(self) -> None:
        self._econ_flush_scheduled = False
        if self._econ_pending:
            self._econ_spawn(self._econ_flush())

    def _econ_spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._econ_loop.create_task(_quiet(coro))
        self._econ_tasks.add(task)
        task.add_done_callback(self._econ_tasks.discard)

    # --- liveness ---------------------------------------------------------------------------

    def start_liveness(
        self, timing: LivenessTiming, offerer: bool, on_lost: Callable[[], None]
    ) -> None:
        """Probe the peer when silent, call ``on_lost`` once after ``timing.dead_after_s``."""
        factor = 1.0 if offerer else ANSWERER_PROBE_FACTOR
        self._econ_probe_after_s = min(timing.probe_after_s * factor, timing.dead_after_s / 2)
        self._econ_dead_after_s = timing.dead_after_s
        self._econ_on_lost = on_lost
        self._econ_heard_at = self._econ_loop.time()
        if self._econ_watched:
            self._econ_arm(self._econ_heard_at + self._econ_probe_after_s)

    def watch(self, watched: bool) -> None:
        """Probe (the default) or leave the peer alone: an unwatched association sends no probe
        and is never declared lost, so an idle one costs nothing; watching it again starts a
        fresh silence period from now."""
        if watched == self._econ_watched:
            return
        self._econ_watched = watched
        if self._econ_liveness_timer is not None:
            self._econ_liveness_timer.cancel()
            self._econ_liveness_timer = None
        if watched and self._econ_on_lost is not None:
            self._econ_heard_at = max(self._econ_heard_at, self._econ_loop.time())
            self._econ_arm(self._econ_heard_at + self._econ_probe_after_s)

    def stop_liveness(self) -> None:
        self._econ_on_lost = None
        if self._econ_liveness_timer is not None:
            self._econ_liveness_timer.cancel()
            self._econ_liveness_timer = None

    def _econ_arm(self, at: float) -> None:
        self._econ_check_at = at
        self._econ_liveness_timer = self._econ_loop.call_at(at, self._econ_liveness_check)

    def _econ_liveness_check(self) -> None:
        self._econ_liveness_timer = None
        on_lost = self._econ_on_lost
        if on_lost is None or not self._econ_watched:
            return
        if self._association_state != self.State.ESTABLISHED:
            return
        now = self._econ_loop.time()
        heard = self._econ_heard_at
        if now - heard >= self._econ_dead_after_s:
            if now - self._econ_check_at < STARVED_S or self._econ_granted_at == heard:
                self._econ_on_lost = None
                on_lost()
                return
            # This process did not run for a while: the peer's answers may be waiting, unread,
            # in the socket, or were never provoked. Give it one probe interval from now (once
            # per silence, so that a starved node still evicts a dead peer).
            heard = now - self._econ_dead_after_s + self._econ_probe_after_s
            self._econ_heard_at = self._econ_granted_at = heard
        probe_after = self._econ_probe_after_s
        if now - heard >= probe_after and now - self._econ_probed_at >= probe_after:
            self._econ_probed_at = now
            self.probes_sent += 1
            self._econ_spawn(self._econ_probe(now))
        due = max(heard, self._econ_probed_at) + probe_after
        self._econ_arm(min(due, heard + self._econ_dead_after_s))

    async def _econ_probe(self, now: float) -> None:
        heartbeat = HeartbeatChunk()
        heartbeat.params.append((_HEARTBEAT_INFO, struct.pack("!d", now)))
        await self._send_chunk(heartbeat)
        await self._econ_flush()

    async def stop(self) -> None:
        self.stop_liveness()
        if self._econ_sack_timer is not None:
            self._econ_sack_timer.cancel()
            self._econ_sack_timer = None
        await super().stop()


async def _quiet(coro: Coroutine[Any, Any, None]) -> None:
    """Run a send in its own task; a link going down (ConnectionError) is not an error."""
    try:
        await coro
    except ConnectionError:
        logger.debug("SCTP send on a closed connection dropped")


def adapt(sctp: RTCSctpTransport) -> EconomySctpTransport:
    """Give one not yet started association the packet economy (see the module docstring)."""
    check_aiortc()
    if isinstance(sctp, EconomySctpTransport):
        return sctp
    sctp.__class__ = EconomySctpTransport
    adapted = cast(EconomySctpTransport, sctp)
    adapted._economy_init()
    return adapted
