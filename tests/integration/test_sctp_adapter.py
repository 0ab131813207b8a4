"""The SCTP packet economy and the HEARTBEAT liveness on real aiortc links over 127.0.0.1.

Packets are counted at the UDP socket (``node.transport.wiretap``), never inferred from timing.
The loss tests drop datagrams in the wiretap, on both ends: every message must still arrive
exactly once and in order (aiortc's retransmission under the adapter's packetisation).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable

import aiortc
import pytest

from node.transport.base import CloseReason, TransportError
from node.transport.sctp_adapter import EconomySctpTransport, LivenessTiming, check_aiortc
from node.transport.webrtc import WebRTCLink, WebRTCTransport
from node.transport.wiretap import DatagramKind, Wiretap

pytestmark = pytest.mark.timeout(90)

OPEN_TIMEOUT_S = 10.0
WAIT_S = 30.0


class Inbox:
    """What one link delivered; ``wait(n)`` returns once ``n`` messages are in."""

    def __init__(self, link: WebRTCLink, reply: Callable[[bytes], None] | None = None) -> None:
        self.messages: list[bytes] = []
        self.closed = asyncio.Event()
        self._more = asyncio.Event()
        self._reply = reply
        link.set_handlers(self._on_message, self.closed.set)

    def _on_message(self, data: bytes) -> None:
        self.messages.append(data)
        self._more.set()
        if self._reply is not None:
            self._reply(data)

    async def wait(self, n: int, timeout_s: float = WAIT_S) -> list[bytes]:
        async with asyncio.timeout(timeout_s):
            while len(self.messages) < n:
                self._more.clear()
                await self._more.wait()
        return self.messages


def inboxes(link_a: WebRTCLink, link_b: WebRTCLink) -> tuple[Inbox, Inbox]:
    return Inbox(link_a), Inbox(link_b)


async def connect(a: WebRTCTransport, b: WebRTCTransport) -> tuple[WebRTCLink, WebRTCLink]:
    offer = await a.create_offer()
    answer = await b.accept_offer(offer.sdp)
    await offer.accept_answer(answer.sdp)
    link_a, link_b = await asyncio.gather(
        offer.wait_open(OPEN_TIMEOUT_S), answer.wait_open(OPEN_TIMEOUT_S)
    )
    return link_a, link_b


@pytest.fixture
async def pair() -> AsyncIterator[tuple[WebRTCLink, WebRTCLink]]:
    a, b = WebRTCTransport(), WebRTCTransport()
    try:
        yield await connect(a, b)
    finally:
        await a.close()
        await b.close()


def numbered(i: int, size: int) -> bytes:
    return i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4)


# --- packets on the wire -----------------------------------------------------------------------


async def test_links_use_the_adapted_association(pair: tuple[WebRTCLink, WebRTCLink]) -> None:
    for link in pair:
        assert isinstance(link._pc.sctp, EconomySctpTransport)


async def test_request_response_takes_two_datagrams_per_round_trip(
    pair: tuple[WebRTCLink, WebRTCLink],
) -> None:
    link_a, link_b = pair
    inbox_b = Inbox(link_b, reply=lambda data: link_b.send(b"answer:" + data))
    inbox_a = Inbox(link_a)
    link_a.send(b"warm-up")
    await inbox_a.wait(1)
    await asyncio.sleep(0.1)  # the warm-up's last SACK is out
    taps = Wiretap.install(link_a), Wiretap.install(link_b)
    rounds = 1000
    for i in range(1, rounds + 1):
        link_a.send(numbered(i, 100))
        await inbox_a.wait(i + 1)
    await asyncio.sleep(0.1)  # the last delayed SACK
    datagrams = sum(t.sent for t in taps)
    assert inbox_b.messages[1:] == [numbered(i, 100) for i in range(1, rounds + 1)]
    assert all(t.by_kind[DatagramKind.STUN] == 0 for t in taps)
    assert datagrams / rounds <= 2.5, f"{datagrams} datagrams for {rounds} round trips"


async def test_a_burst_of_100_messages_shares_packets(
    pair: tuple[WebRTCLink, WebRTCLink],
) -> None:
    link_a, link_b = pair
    _, inbox_b = inboxes(link_a, link_b)
    taps = Wiretap.install(link_a), Wiretap.install(link_b)
    burst = [numbered(i, 100) for i in range(100)]
    for message in burst:
        link_a.send(message)
    assert await inbox_b.wait(100) == burst
    await asyncio.sleep(0.1)  # the last delayed SACK
    datagrams = sum(t.sent for t in taps)
    assert datagrams <= 40, f"{datagrams} datagrams for 100 messages"


# A few seconds on a quiet machine; the deadline is for a 2-core box shared by many jobs, where
# one RTT can take tens of milliseconds and 20 % loss keeps the congestion window at its floor.
@pytest.mark.timeout(240)
@pytest.mark.parametrize("loss", [0.05, 0.20])
async def test_messages_arrive_exactly_once_in_order_despite_datagram_loss(
    pair: tuple[WebRTCLink, WebRTCLink], loss: float
) -> None:
    link_a, link_b = pair
    inbox_a, inbox_b = inboxes(link_a, link_b)
    taps = (
        Wiretap.install(link_a, loss, random.Random(1)),
        Wiretap.install(link_b, loss, random.Random(2)),
    )
    count = 10_000

    # Both directions at once (DATA and SACKs share packets); DHT-sized messages, and every
    # 500th one is three DATA fragments (reassembly across lost packets).
    def size(i: int) -> int:
        return 3000 if i % 500 == 7 else (8, 40, 100, 200)[i % 7 % 4]

    forward = [numbered(i, size(i)) for i in range(count)]
    backward = [numbered(count - i, size(i + 3)) for i in range(count)]
    window = 1000  # at most two windows in flight: the send queues stay far from full
    for start in range(0, count, window):
        for message in forward[start : start + window]:
            link_a.send(message)
        for message in backward[start : start + window]:
            link_b.send(message)
        await inbox_b.wait(start, timeout_s=120)
        await inbox_a.wait(start, timeout_s=120)
    assert await inbox_b.wait(count, timeout_s=120) == forward
    assert await inbox_a.wait(count, timeout_s=120) == backward
    await asyncio.sleep(0.2)
    assert inbox_b.messages == forward  # nothing delivered twice after the fact
    assert inbox_a.messages == backward
    assert all(t.dropped > 0 for t in taps)
    assert link_a.is_open
    assert link_b.is_open


# --- liveness ----------------------------------------------------------------------------------

TIMING = LivenessTiming(probe_after_s=1.0, dead_after_s=3.0)


@pytest.fixture
async def fast_liveness_pair() -> AsyncIterator[tuple[WebRTCLink, WebRTCLink]]:
    a, b = WebRTCTransport(liveness=TIMING), WebRTCTransport(liveness=TIMING)
    try:
        yield await connect(a, b)
    finally:
        await a.close()
        await b.close()


async def lost_at_the_deadline(link: WebRTCLink, inbox: Inbox, since: float) -> None:
    """``link`` closes as LIVENESS_LOST about ``dead_after_s`` after ``since`` (its peer went
    dark then); ``inbox`` is the one on ``link``."""
    await asyncio.wait_for(inbox.closed.wait(), TIMING.dead_after_s + 3.0)
    elapsed = time.monotonic() - since
    assert link.close_reason is CloseReason.LIVENESS_LOST
    assert TIMING.dead_after_s - 1.0 <= elapsed <= TIMING.dead_after_s + 2.0


async def test_an_idle_link_sends_one_probe_per_interval_each_way_and_stays_open(
    fast_liveness_pair: tuple[WebRTCLink, WebRTCLink],
) -> None:
    offerer, answerer = fast_liveness_pair
    inboxes(offerer, answerer)
    taps = Wiretap.install(offerer), Wiretap.install(answerer)
    idle_s = 6.5  # > dead_after_s (probes keep it open) and > aioice's consent interval (4-6 s)
    await asyncio.sleep(idle_s)
    most = int(idle_s / TIMING.probe_after_s) + 1
    for tap in taps:
        assert 1 <= tap.sent <= most, f"{tap.sent} probe datagrams in {idle_s} s"
        assert tap.by_kind[DatagramKind.STUN] == 0  # aioice consent checks are off
    assert offerer.is_open
    assert answerer.is_open


async def test_a_busy_link_sends_no_probe(
    fast_liveness_pair: tuple[WebRTCLink, WebRTCLink],
) -> None:
    offerer, answerer = fast_liveness_pair
    _, inbox = inboxes(offerer, answerer)
    sctp = offerer._sctp
    assert sctp is not None
    before = sctp.probes_sent
    for i in range(40):  # traffic every 0.1 s for 4 s: never silent for probe_after_s
        offerer.send(numbered(i, 50))
        await asyncio.sleep(0.1)
    await inbox.wait(40)
    assert sctp.probes_sent == before


async def test_a_silent_peer_is_declared_lost_after_the_deadline(
    fast_liveness_pair: tuple[WebRTCLink, WebRTCLink],
) -> None:
    offerer, answerer = fast_liveness_pair
    inbox, _ = inboxes(offerer, answerer)
    Wiretap.install(answerer, loss=1.0)  # the answerer goes dark, as after a SIGKILL
    went_dark = time.monotonic()
    await lost_at_the_deadline(offerer, inbox, since=went_dark)


async def test_an_unwatched_link_costs_nothing_idle_and_is_not_lost_until_watched_again(
    fast_liveness_pair: tuple[WebRTCLink, WebRTCLink],
) -> None:
    offerer, answerer = fast_liveness_pair
    inbox, _ = inboxes(offerer, answerer)
    offerer.watch(False)
    answerer.watch(False)
    taps = Wiretap.install(offerer), Wiretap.install(answerer)
    await asyncio.sleep(TIMING.dead_after_s + 1.5)  # silent past the deadline
    assert [t.sent for t in taps] == [0, 0]  # not one probe, either way
    assert offerer.is_open
    assert answerer.is_open
    # Watched again while the peer has gone dark: probed, then lost at a fresh deadline.
    taps[1].remove()
    Wiretap.install(answerer, loss=1.0)
    watched_at = time.monotonic()
    offerer.watch(True)
    await lost_at_the_deadline(offerer, inbox, since=watched_at)


async def test_a_starved_process_does_not_declare_its_peers_lost(
    fast_liveness_pair: tuple[WebRTCLink, WebRTCLink],
) -> None:
    offerer, answerer = fast_liveness_pair
    inboxes(offerer, answerer)
    await asyncio.sleep(0.5)
    time.sleep(TIMING.dead_after_s + 1.0)  # noqa: ASYNC251 (the point: the whole loop stalls)
    await asyncio.sleep(TIMING.probe_after_s * 2)
    assert offerer.is_open
    assert answerer.is_open


# --- the version check -------------------------------------------------------------------------


def test_an_unknown_aiortc_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    check_aiortc()  # the installed one passes
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(TransportError, match=r"written for aiortc 1\.16\."):
        check_aiortc()
    with pytest.raises(TransportError):
        WebRTCTransport()
    WebRTCTransport(sctp_economy=False)  # aiortc as shipped needs no check
