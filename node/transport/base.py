"""The transport seam: how the node gets an ordered, reliable message channel to one peer.

A transport turns an out-of-band exchange of two opaque strings (an offer "SDP" and an answer
"SDP", carried by the signaling server or relayed through the DHT as SIGNAL messages) into an
open :class:`Link`. Two implementations share this seam and one contract test suite:

* ``node.transport.webrtc.WebRTCTransport`` -- aiortc peer connections, one data channel each;
* ``node.transport.memory.MemoryTransport`` -- in-process links through a shared ``MemoryHub``.

Dialing::

    offerer                                  answerer
    pending = await t.create_offer()
    (pending.sdp travels to the answerer) -> answer = await t.accept_offer(sdp)
    await pending.accept_answer(sdp)     <- (answer.sdp travels back)
    link = await pending.wait_open(5.0)      link = await answer.wait_open(5.0)

Invariants every implementation keeps:

* ``Link.send`` never blocks. It hands data to the channel while the channel's buffered amount is
  below ``BUFFERED_AMOUNT_HIGH_BYTES``, otherwise appends to a bounded FIFO queue that drains
  when the buffered amount falls to ``BUFFERED_AMOUNT_LOW_BYTES``. Order is preserved across
  both paths. A full queue raises :class:`LinkBusy`; the message is not sent.
* Messages larger than ``MAX_MESSAGE_BYTES`` raise :class:`MessageTooLarge` (a ``ValueError``:
  the caller misused the API) and are not sent.
* ``on_close`` fires exactly once per link, whichever side closed it or whatever failed.
  Messages received before ``set_handlers`` is called are buffered and delivered then.
* ``wait_open`` that times out raises :class:`DialTimeout` and releases the connection.
* ``Link.close_reason`` says why a link ended (:class:`CloseReason`); ``LIVENESS_LOST`` means
  the transport heard nothing from the peer for its liveness deadline: the peer is gone. A
  transport whose ``provides_liveness`` is true probes idle links itself, so the node need not.

Exceptions::

    TransportError
     +-- LinkClosed        send on a closed link
     +-- LinkBusy          the bounded send queue is full (backpressure: retry later or drop)
     +-- DialTimeout       the link did not open within the timeout
     +-- DialFailed        bad offer/answer, refused or failed connection
    MessageTooLarge (ValueError)   payload above MAX_MESSAGE_BYTES
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from node.errors import DhtError, LocalError
from node.transport.ice_path import LinkPath

# --- limits -------------------------------------------------------------------------------------

#: Largest payload one ``Link.send`` accepts (the wire protocol's message size limit).
MAX_MESSAGE_BYTES = 60 * 1024
#: While the channel holds at least this many unsent bytes, ``send`` queues instead of writing.
BUFFERED_AMOUNT_HIGH_BYTES = 1024 * 1024
#: The queue drains when the channel's buffered amount falls to this many bytes.
BUFFERED_AMOUNT_LOW_BYTES = 256 * 1024
#: Most messages the per-link send queue holds (beyond what the channel buffers itself).
SEND_QUEUE_MAX_MESSAGES = 512
#: Most payload bytes the per-link send queue holds; whichever cap is hit first raises LinkBusy.
SEND_QUEUE_MAX_BYTES = 8 * 1024 * 1024


class CloseReason(enum.StrEnum):
    """Why a link ended (``Link.close_reason``)."""

    LOCAL = "local"  # Link.close() on this side (or this side gave up on the link)
    REMOTE = "remote"  # the peer closed it or the connection failed
    LIVENESS_LOST = "liveness lost"  # nothing heard from the peer for the liveness deadline


# --- errors -------------------------------------------------------------------------------------


class TransportError(DhtError):
    """Base class of every error the transport raises on purpose."""


class LinkClosed(TransportError):
    """The link is closed (locally or by the peer); nothing more can be sent."""


class LinkBusy(TransportError):
    """The bounded send queue is full; the message was not sent."""


class DialTimeout(TransportError):
    """The connection did not open in time; it has been released."""


class DialFailed(TransportError):
    """The offer or answer was malformed, unknown, or the connection failed to open."""


class MessageTooLarge(LocalError, ValueError):
    """A payload above ``MAX_MESSAGE_BYTES`` was passed to ``Link.send``."""


def check_message_size(data: bytes) -> None:
    """Raise :class:`MessageTooLarge` when ``data`` is above the wire limit."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"message of {len(data)} bytes exceeds MAX_MESSAGE_BYTES={MAX_MESSAGE_BYTES}"
        )


class SendQueue:
    """The backpressure rule both transports share (see the module docstring).

    ``write`` hands one message to the channel; ``buffered_amount`` reports the channel's unsent
    bytes. The owner calls :meth:`drain` when the channel signals that its buffered amount fell to
    the low-water mark, and :meth:`clear` when the link closes.
    """

    __slots__ = ("_buffered_amount", "_queue", "_queued_bytes", "_write", "peak_messages")

    def __init__(self, write: Callable[[bytes], None], buffered_amount: Callable[[], int]) -> None:
        self._write = write
        self._buffered_amount = buffered_amount
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        #: Diagnostics: the deepest the queue has been (0 = the fast path was always taken).
        self.peak_messages = 0

    def __len__(self) -> int:
        return len(self._queue)

    def send(self, data: bytes) -> None:
        check_message_size(data)
        if not self._queue and self._buffered_amount() < BUFFERED_AMOUNT_HIGH_BYTES:
            self._write(data)
            return
        if (
            len(self._queue) >= SEND_QUEUE_MAX_MESSAGES
            or self._queued_bytes + len(data) > SEND_QUEUE_MAX_BYTES
        ):
            raise LinkBusy(
                f"send queue full ({len(self._queue)} messages, {self._queued_bytes} bytes)"
            )
        self._queue.append(data)
        self._queued_bytes += len(data)
        self.peak_messages = max(self.peak_messages, len(self._queue))

    def drain(self) -> None:
        """Move queued messages to the channel while it is below the high-water mark."""
        while self._queue and self._buffered_amount() < BUFFERED_AMOUNT_HIGH_BYTES:
            data = self._queue.popleft()
            self._queued_bytes -= len(data)
            self._write(data)

    def clear(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0


INBOUND_BUFFER_MAX_MESSAGES = 1024
"""Messages held for a link whose handlers are not set yet; beyond this the link is closed."""

logger = logging.getLogger(__name__)


class LinkBase:
    """What every ``Link`` implementation shares: open/closed state, handler installation,
    buffering of messages that arrive before the handlers, exactly-once ``on_close``, and the
    bounded send queue. Subclasses provide ``_write``/``_buffered_amount`` (the wire) and
    ``_release`` (their own cleanup, called once on shutdown)."""

    _label = "link"

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self._close_fired = False
        self._close_reason: CloseReason | None = None
        self._on_message: Callable[[bytes], None] | None = None
        self._on_close: Callable[[], None] | None = None
        self._inbound: deque[bytes] = deque()
        self._queue = SendQueue(self._write, self._buffered_amount)
        self._path: LinkPath | None = None
        self.watched = True
        """Whether the transport probes this link's peer when idle (``watch``)."""

    # --- Link -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self._closed and self._opened.done() and self._opened.exception() is None

    @property
    def close_reason(self) -> CloseReason | None:
        """Why the link ended; None while it is open."""
        return self._close_reason

    @property
    def path(self) -> LinkPath | None:
        """The network path the open link took (host / srflx / relay); None when unknown."""
        return self._path

    def diagnose(self) -> str:
        """Why the link has not opened, as far as the transport can tell ("" when unknown)."""
        return ""

    def watch(self, watched: bool) -> None:
        """Probe the idle peer or not (``Link.watch``); a transport without liveness only
        records it (``watched``)."""
        self.watched = watched

    @property
    def send_queue_peak(self) -> int:
        """Diagnostics: the deepest the send queue has been (0: never needed)."""
        return self._queue.peak_messages

    def send(self, data: bytes) -> None:
        if not self.is_open:
            raise LinkClosed("link is closed" if self._closed else "link is not open yet")
        self._queue.send(bytes(data))

    def set_handlers(
        self, on_message: Callable[[bytes], None], on_close: Callable[[], None]
    ) -> None:
        self._on_message = on_message
        self._on_close = on_close
        while self._inbound and not self._close_fired and self._reading_enabled():
            self._deliver(self._inbound.popleft())
        if self._closed and not self._close_fired:
            self._fire_close()

    def close(self) -> None:
        self._shutdown("closed locally", CloseReason.LOCAL)

    async def _wait_open(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._opened)
        except TimeoutError:
            detail = self.diagnose()
            self.close()
            message = f"{self._label} did not open within {timeout_s:.3f} s"
            raise DialTimeout(f"{message}: {detail}" if detail else message) from None

    # --- for subclasses ---------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _buffered_amount(self) -> int:
        raise NotImplementedError

    def _release(self, reason: str) -> None:
        """Subclass cleanup on shutdown (runs once, after the common part)."""

    def _reading_enabled(self) -> bool:
        return True

    def _mark_open(self) -> bool:
        """The wire is up; False when it was already open or the link is closed."""
        if self._opened.done() or self._closed:
            return False
        self._opened.set_result(None)
        return True

    def _receive(self, data: bytes) -> None:
        """A message from the wire: deliver it, or hold it until the handlers are set."""
        if self._closed:
            return
        if self._on_message is None:
            if len(self._inbound) >= INBOUND_BUFFER_MAX_MESSAGES:
                logger.warning(
                    "link handlers never set; closing after %d messages", len(self._inbound)
                )
                self._shutdown("inbound buffer overflow", CloseReason.LOCAL)
                return
            self._inbound.append(data)
            return
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        assert self._on_message is not None
        try:
            self._on_message(data)
        except Exception:
            logger.exception("on_message handler failed")

    def _shutdown(self, reason: str, kind: CloseReason = CloseReason.REMOTE) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = kind
        logger.debug("%s shut down: %s", self._label, reason)
        self._queue.clear()
        if not self._opened.done():
            self._opened.set_exception(DialFailed(f"{self._label} ended before opening: {reason}"))
            self._opened.exception()  # mark retrieved: a cancelled dial may never await it
        if self._on_close is not None:
            self._loop.call_soon(self._fire_close)
        self._release(reason)

    def _fire_close(self) -> None:
        if self._close_fired or self._on_close is None:
            return
        self._close_fired = True
        self._inbound.clear()
        try:
            self._on_close()
        except Exception:
            logger.exception("on_close handler failed")


# --- the seam -----------------------------------------------------------------------------------


class Link(Protocol):
    """An open, ordered, reliable message channel to one peer."""

    def send(self, data: bytes) -> None:
        """Send one message. Never blocks; raises LinkClosed, LinkBusy or MessageTooLarge."""
        ...

    def set_handlers(
        self, on_message: Callable[[bytes], None], on_close: Callable[[], None]
    ) -> None:
        """Install callbacks; buffered messages (and a close that already happened) follow."""
        ...

    def close(self) -> None:
        """Close the link; idempotent. ``on_close`` fires once on both sides."""
        ...

    @property
    def is_open(self) -> bool:
        """True until the link is closed by either side or fails."""
        ...

    @property
    def close_reason(self) -> CloseReason | None:
        """Why the link ended (None while open); ``LIVENESS_LOST``: the peer is gone."""
        ...

    @property
    def path(self) -> LinkPath | None:
        """The network path the link took (``node.transport.ice_path``); None when unknown."""
        ...

    def watch(self, watched: bool) -> None:
        """With transport liveness: probe the idle peer (default), or not (an unwatched link
        costs nothing when idle and is never closed as ``LIVENESS_LOST``)."""
        ...


class PendingOffer(Protocol):
    """The offerer's half of a dial: holds the offer until the answer comes back."""

    sdp: str

    async def accept_answer(self, sdp: str) -> None:
        """Apply the remote answer; raises DialFailed for a malformed or foreign answer."""
        ...

    async def wait_open(self, timeout_s: float) -> Link:
        """Wait for the link to open; raises DialTimeout (and releases it) after ``timeout_s``."""
        ...

    def cancel(self) -> None:
        """Abandon the dial and release its resources; idempotent."""
        ...

    def diagnose(self) -> str:
        """Why the link has not opened yet, as far as the transport can tell ("" if unknown)."""
        ...


class PendingAnswer(Protocol):
    """The answerer's half of a dial, created from a remote offer."""

    sdp: str

    async def wait_open(self, timeout_s: float) -> Link:
        """Wait for the link to open; raises DialTimeout (and releases it) after ``timeout_s``."""
        ...

    def cancel(self) -> None:
        """Abandon the dial and release its resources; idempotent."""
        ...


class Transport(Protocol):
    """Makes links from offer/answer exchanges."""

    #: True when idle links are probed by the transport and a dead peer ends its link with
    #: ``CloseReason.LIVENESS_LOST``; the node then runs no liveness pings of its own.
    provides_liveness: bool

    async def create_offer(self) -> PendingOffer:
        """Start a dial; the returned offer's ``sdp`` is complete (ICE gathered)."""
        ...

    async def accept_offer(self, sdp: str) -> PendingAnswer:
        """Answer a remote offer; raises DialFailed for a malformed offer."""
        ...

    async def close(self) -> None:
        """Close every link and pending dial this transport made."""
        ...
