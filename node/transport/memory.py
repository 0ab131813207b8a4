"""In-process transport: the same seam as WebRTC, for tests and local experiments.

A ``MemoryHub`` is the shared "network" of one event loop. ``MemoryTransport(hub)`` dials through
it: the offer and answer strings are opaque tokens (``mem-offer:<n>`` / ``mem-answer:<n>``) that
the hub resolves, so they can travel through real signaling code unchanged.

Model of a link (kept close to a WebRTC data channel so both pass one contract suite):

* Each direction has a "wire": a FIFO of messages handed to the channel but not yet delivered.
  Its byte count is the sender's ``buffered_amount`` (``RTCDataChannel.bufferedAmount``).
  Delivery happens in later loop callbacks, never inside ``send``, after ``hub.latency_s``.
* ``send`` uses the shared :class:`~node.transport.base.SendQueue` rule: write while the wire is
  below the high-water mark, else queue (bounded, ``LinkBusy``); the queue drains when delivery
  brings the wire down to the low-water mark.
* A receiver can stall reading (:meth:`MemoryLink.pause_reading`) to build backpressure on the
  sender, as a slow peer does.
* Closing either side closes both; undelivered messages are dropped (as an SCTP ABORT does);
  ``on_close`` fires once per side in a later callback.
* ``hub.dial_loss`` is the probability that a dial never opens (an ICE failure): the answer is
  produced but both ``wait_open`` calls time out. It draws from ``hub.rng`` (seedable).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import deque
from typing import Any

from node.transport.base import (
    BUFFERED_AMOUNT_LOW_BYTES,
    DialFailed,
    LinkBase,
    TransportError,
)

logger = logging.getLogger(__name__)

OFFER_PREFIX = "mem-offer:"
ANSWER_PREFIX = "mem-answer:"
#: Messages held for a link whose handlers are not set yet; beyond this the link is closed.


class MemoryHub:
    """The shared in-process network: resolves offer/answer tokens, holds link properties."""

    def __init__(
        self,
        latency_s: float = 0.0,
        dial_loss: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if not 0.0 <= dial_loss <= 1.0:
            raise ValueError("dial_loss must be within [0, 1]")
        self.latency_s = latency_s
        self.dial_loss = dial_loss
        self.rng = rng if rng is not None else random.Random()
        self._ids = itertools.count(1)
        self._offers: dict[str, MemoryPendingOffer] = {}
        self._answers: dict[str, MemoryPendingAnswer] = {}

    def _next_id(self) -> int:
        return next(self._ids)


class MemoryLink(LinkBase):
    """One side of an in-process link."""

    def __init__(self, hub: MemoryHub) -> None:
        super().__init__()
        self._hub = hub
        self._peer: MemoryLink | None = None
        # Outgoing wire: (deliver_at, payload), in order; its bytes are the buffered amount.
        self._wire: deque[tuple[float, bytes]] = deque()
        self._wire_bytes = 0
        self._pump_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._reading = True
        self._owner: MemoryTransport | None = None
        self._token: str | None = None  # the offer/answer token the hub resolves to this link

    # --- Link -------------------------------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        """Bytes sent but not yet delivered to the peer (``bufferedAmount``)."""
        return self._wire_bytes

    # --- test hooks -------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop taking messages off the wire (a stalled receiver); the sender backs up."""
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True
        if self._peer is not None:
            self._peer._schedule_pump()

    # --- internals --------------------------------------------------------------------------

    def _buffered_amount(self) -> int:
        return self._wire_bytes

    def _write(self, data: bytes) -> None:
        now = self._loop.time()
        last = self._wire[-1][0] if self._wire else now
        self._wire.append((max(now + self._hub.latency_s, last), data))
        self._wire_bytes += len(data)
        self._schedule_pump()

    def _schedule_pump(self) -> None:
        if self._pump_handle is not None or not self._wire or self._closed:
            return
        due = self._wire[0][0]
        if due <= self._loop.time():
            self._pump_handle = self._loop.call_soon(self._pump)
        else:
            self._pump_handle = self._loop.call_at(due, self._pump)

    def _pump(self) -> None:
        """Deliver every due message of this side's wire to the peer, in order."""
        self._pump_handle = None
        peer = self._peer
        if peer is None or self._closed:
            return
        now = self._loop.time()
        was_above_low = self._wire_bytes > BUFFERED_AMOUNT_LOW_BYTES
        while self._wire and self._wire[0][0] <= now and peer._reading and not self._closed:
            _, data = self._wire.popleft()
            self._wire_bytes -= len(data)
            peer._receive(data)
        if was_above_low and self._wire_bytes <= BUFFERED_AMOUNT_LOW_BYTES and not self._closed:
            self._queue.drain()  # the "bufferedamountlow" event
        if peer._reading:
            self._schedule_pump()

    async def wait_open(self, timeout_s: float) -> MemoryLink:
        await self._wait_open(timeout_s)
        return self

    def _reading_enabled(self) -> bool:
        return self._reading

    def _release(self, reason: str) -> None:
        self._wire.clear()
        self._wire_bytes = 0
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        if self._owner is not None:
            self._owner._links.discard(self)
        if self._token is not None:
            self._hub._offers.pop(self._token, None)
            self._hub._answers.pop(self._token, None)
        if self._peer is not None:
            self._peer._shutdown("closed by peer")


class MemoryPendingOffer:
    def __init__(self, hub: MemoryHub, link: MemoryLink, sdp: str) -> None:
        self.sdp = sdp
        self._hub = hub
        self._link = link
        self._answered = False

    async def accept_answer(self, sdp: str) -> None:
        if self._answered:
            raise DialFailed("an answer was already applied to this offer")
        if self._link._closed:
            raise DialFailed("the dial was cancelled or has failed")
        answer = self._hub._answers.get(sdp) if isinstance(sdp, str) else None
        if answer is None or answer._offer_sdp != self.sdp:
            raise DialFailed("unknown answer token, or an answer to another offer")
        del self._hub._answers[sdp]
        self._answered = True
        self._hub._offers.pop(self.sdp, None)
        if answer._link._closed:
            return  # the answerer gave up: wait_open times out, as with WebRTC
        if answer._lost:
            return  # no connectivity: neither side ever hears of the other
        ours, theirs = self._link, answer._link
        ours._peer, theirs._peer = theirs, ours
        # Both sides open in a later callback, as an ICE/DTLS/SCTP handshake would.
        ours._loop.call_soon(ours._mark_open)
        ours._loop.call_soon(theirs._mark_open)

    async def wait_open(self, timeout_s: float) -> MemoryLink:
        return await self._link.wait_open(timeout_s)

    def cancel(self) -> None:
        self._link.close()

    def diagnose(self) -> str:
        return self._link.diagnose()


class MemoryPendingAnswer:
    def __init__(self, link: MemoryLink, sdp: str, offer_sdp: str, lost: bool) -> None:
        self.sdp = sdp
        self._link = link
        self._offer_sdp = offer_sdp
        self._lost = lost

    async def wait_open(self, timeout_s: float) -> MemoryLink:
        return await self._link.wait_open(timeout_s)

    def cancel(self) -> None:
        self._link.close()


class MemoryTransport:
    """The in-process implementation of ``node.transport.base.Transport``."""

    #: Memory links never go silent on their own: the node's PING liveness stays on.
    provides_liveness = False

    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub
        self._links: set[MemoryLink] = set()
        self._closed = False

    def _new_link(self) -> MemoryLink:
        if self._closed:
            raise TransportError("transport is closed")
        link = MemoryLink(self._hub)
        link._owner = self
        self._links.add(link)
        return link

    async def create_offer(self) -> MemoryPendingOffer:
        link = self._new_link()
        sdp = f"{OFFER_PREFIX}{self._hub._next_id()}"
        pending = MemoryPendingOffer(self._hub, link, sdp)
        link._token = sdp
        self._hub._offers[sdp] = pending
        return pending

    async def accept_offer(self, sdp: str) -> MemoryPendingAnswer:
        offer = self._hub._offers.get(sdp) if isinstance(sdp, str) else None
        if offer is None or offer._link._closed:
            raise DialFailed("unknown or expired offer token")
        link = self._new_link()
        answer_sdp = f"{ANSWER_PREFIX}{self._hub._next_id()}"
        lost = self._hub.dial_loss > 0 and self._hub.rng.random() < self._hub.dial_loss
        pending = MemoryPendingAnswer(link, answer_sdp, sdp, lost)
        link._token = answer_sdp
        self._hub._answers[answer_sdp] = pending
        return pending

    @property
    def open_connections(self) -> int:
        """Diagnostics: links not yet shut down (pending dials included)."""
        return len(self._links)

    async def close(self) -> None:
        self._closed = True
        for link in list(self._links):
            link.close()

    async def __aenter__(self) -> MemoryTransport:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
