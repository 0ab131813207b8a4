"""The node meets browsers halfway, with a bare aiortc peer standing in for the browser.

The stand-in does what a browser does by default and the node's own peers never do: it opens an
in-band (DCEP) channel ``createDataChannel("dht")`` instead of the negotiated stream 0, and it
hides its host address behind an mDNS ``.local`` name in its SDP. (The real-Chromium tests live
with the browser peer, web/.)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from node.transport import webrtc
from node.transport.sdp import strip_mdns_candidates
from node.transport.webrtc import WebRTCTransport

pytestmark = pytest.mark.timeout(60)

OPEN_TIMEOUT_S = 10.0
# aioice waits ~1 s per unresolvable mDNS name inside setRemoteDescription; without that wait
# applying a description takes a few milliseconds.
APPLY_BUDGET_S = 0.4


def _mdns(sdp: str) -> str:
    """The SDP as a browser would write it: host candidates under an mDNS name."""
    name = f"{uuid.uuid4()}.local"
    return "".join(
        line.replace(" 127.0.0.1 ", f" {name} ") if line.startswith("a=candidate:") else line
        for line in sdp.splitlines(keepends=True)
    )


class StandIn:
    """A 'browser': a raw RTCPeerConnection gathering on 127.0.0.1."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    async def local(self, description: RTCSessionDescription) -> str:
        token = webrtc._ice_addresses_var.set(("127.0.0.1",))
        try:
            await self.pc.setLocalDescription(description)
        finally:
            webrtc._ice_addresses_var.reset(token)
        assert self.pc.localDescription is not None
        return _mdns(self.pc.localDescription.sdp)

    def listen(self, channel: RTCDataChannel) -> None:
        channel.on("message", lambda data: self.received.put_nowait(data))


@pytest.fixture
async def node() -> AsyncIterator[WebRTCTransport]:
    transport = WebRTCTransport()
    yield transport
    await transport.close()


@pytest.fixture
async def browser() -> AsyncIterator[StandIn]:
    standin = StandIn()
    yield standin
    await standin.pc.close()


def test_strip_mdns_candidates_keeps_ip_candidates_and_drops_end_of_candidates() -> None:
    sdp = (
        "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        "a=candidate:1 1 udp 2122260223 0f3c9a2e-1111.local 51234 typ host generation 0\r\n"
        "a=candidate:2 1 udp 2122260223 127.0.0.1 51235 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    stripped, removed = strip_mdns_candidates(sdp)
    assert removed == 1
    assert stripped == (
        "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        "a=candidate:2 1 udp 2122260223 127.0.0.1 51235 typ host\r\n"
    )
    plain = sdp.replace("0f3c9a2e-1111.local", "127.0.0.2")
    assert strip_mdns_candidates(plain) == (plain, 0)


async def test_a_browser_offer_with_an_inband_channel_and_mdns_candidates_connects(
    node: WebRTCTransport, browser: StandIn
) -> None:
    channel = browser.pc.createDataChannel("dht")  # the browser default: in-band, DCEP
    browser.listen(channel)
    offer = await browser.local(await browser.pc.createOffer())
    assert ".local " in offer

    started = time.monotonic()
    pending = await node.accept_offer(offer)
    apply_s = time.monotonic() - started
    assert apply_s < APPLY_BUDGET_S, f"accepting the offer took {apply_s:.3f} s"
    await browser.pc.setRemoteDescription(RTCSessionDescription(pending.sdp, "answer"))

    link = await pending.wait_open(OPEN_TIMEOUT_S)
    link.send(b"HELLO from the node")  # may go out on stream 0 before the DCEP OPEN arrives
    got: list[bytes] = []
    link.set_handlers(got.append, lambda: None)
    assert await asyncio.wait_for(browser.received.get(), OPEN_TIMEOUT_S) == b"HELLO from the node"
    open_s = time.monotonic() - started
    channel.send(b"HELLO from the browser")
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got == [b"HELLO from the browser"]
    link.send(b"after the switch")
    assert await asyncio.wait_for(browser.received.get(), OPEN_TIMEOUT_S) == b"after the switch"
    assert browser.received.empty()  # the HELLO came exactly once
    assert open_s < 1.0, f"the first message took {open_s:.3f} s"


async def test_a_node_offer_answered_by_a_browser_with_mdns_candidates_connects(
    node: WebRTCTransport, browser: StandIn
) -> None:
    pending = await node.create_offer()
    await browser.pc.setRemoteDescription(RTCSessionDescription(pending.sdp, "offer"))
    channel = browser.pc.createDataChannel("dht", negotiated=True, id=0)
    browser.listen(channel)
    answer = await browser.local(await browser.pc.createAnswer())
    assert ".local " in answer

    started = time.monotonic()
    await pending.accept_answer(answer)
    apply_s = time.monotonic() - started
    assert apply_s < APPLY_BUDGET_S, f"accepting the answer took {apply_s:.3f} s"
    link = await pending.wait_open(OPEN_TIMEOUT_S)
    link.send(b"ping")
    assert await asyncio.wait_for(browser.received.get(), OPEN_TIMEOUT_S) == b"ping"
