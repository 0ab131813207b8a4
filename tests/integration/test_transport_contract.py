"""One contract suite for every Transport: the in-memory hub and aiortc over 127.0.0.1.

Every test runs against both implementations (``transports`` fixture). The last test connects two
OS processes over WebRTC.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.transport.base import (
    BUFFERED_AMOUNT_HIGH_BYTES,
    MAX_MESSAGE_BYTES,
    SEND_QUEUE_MAX_MESSAGES,
    DialFailed,
    DialTimeout,
    LinkBusy,
    LinkClosed,
    MessageTooLarge,
    Transport,
)
from node.transport.ice_path import LinkPath
from node.transport.memory import MemoryHub, MemoryTransport
from node.transport.webrtc import WebRTCTransport, parse_ice_server
from tests.support.procs import reap

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[2]
OPEN_TIMEOUT_S = 10.0
DELIVERY_TIMEOUT_S = 20.0


class Collector:
    """Records what a link delivers; lets a test await a message count or the close."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.closes = 0
        self._want = 0
        self._enough = asyncio.Event()
        self.closed = asyncio.Event()

    def on_message(self, data: bytes) -> None:
        self.messages.append(data)
        if len(self.messages) >= self._want:
            self._enough.set()

    def on_close(self) -> None:
        self.closes += 1
        self.closed.set()

    async def wait_messages(self, n: int, timeout_s: float = DELIVERY_TIMEOUT_S) -> list[bytes]:
        self._want = n
        if len(self.messages) < n:
            self._enough.clear()
            async with asyncio.timeout(timeout_s):
                await self._enough.wait()
        return self.messages

    async def wait_closed(self, timeout_s: float = DELIVERY_TIMEOUT_S) -> None:
        async with asyncio.timeout(timeout_s):
            await self.closed.wait()


Pair = tuple[Any, Collector, Any, Collector]


async def connect(a: Transport, b: Transport) -> Pair:
    offer = await a.create_offer()
    answer = await b.accept_offer(offer.sdp)
    await offer.accept_answer(answer.sdp)
    link_a, link_b = await asyncio.gather(
        offer.wait_open(OPEN_TIMEOUT_S), answer.wait_open(OPEN_TIMEOUT_S)
    )
    ca, cb = Collector(), Collector()
    link_a.set_handlers(ca.on_message, ca.on_close)
    link_b.set_handlers(cb.on_message, cb.on_close)
    return link_a, ca, link_b, cb


def send_until_busy(
    link: Any, size: int, max_messages: int, allow_no_busy: bool = False, first: int = 0
) -> list[bytes]:
    """Send numbered messages until LinkBusy; return the ones accepted.

    Fails when ``max_messages`` were accepted without LinkBusy, unless ``allow_no_busy``.
    """
    sent: list[bytes] = []
    for i in range(first, first + max_messages):
        msg = i.to_bytes(4, "big") * (size // 4)
        try:
            link.send(msg)
        except LinkBusy:
            return sent
        sent.append(msg)
    if allow_no_busy:
        return sent
    raise AssertionError(f"no LinkBusy after {max_messages} messages of {size} bytes")


async def settle() -> None:
    """Let already-scheduled callbacks (a second on_close, were there one) run."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture(params=["memory", "webrtc"])
async def transports(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Any, Any]]:
    a: Any
    b: Any
    if request.param == "memory":
        hub = MemoryHub()
        a, b = MemoryTransport(hub), MemoryTransport(hub)
    else:
        a, b = WebRTCTransport(["127.0.0.1"]), WebRTCTransport(["127.0.0.1"])
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_offer_answer_opens_both_sides(transports: tuple[Any, Any]) -> None:
    a, b = transports
    link_a, _, link_b, _ = await connect(a, b)
    assert link_a.is_open
    assert link_b.is_open
    assert a.open_connections == 1
    assert b.open_connections == 1
    # Loopback with no NAT: WebRTC reports a host path; the memory transport has no ICE.
    expected = LinkPath.HOST if isinstance(a, WebRTCTransport) else None
    assert (link_a.path, link_b.path) == (expected, expected)


async def test_messages_both_ways_arrive_in_order_and_intact(
    transports: tuple[Any, Any],
) -> None:
    a, b = transports
    link_a, ca, link_b, cb = await connect(a, b)
    big = bytes(range(256)) * (MAX_MESSAGE_BYTES // 256)
    assert len(big) == MAX_MESSAGE_BYTES
    small = [i.to_bytes(4, "big") + b"x" * (i % 50) for i in range(1000)]
    forward = [b"\x01", big, *small]
    backward = [b"\xff", big[::-1], *reversed(small)]
    for msg in forward:
        link_a.send(msg)
    for msg in backward:
        link_b.send(msg)
    assert await cb.wait_messages(len(forward)) == forward
    assert await ca.wait_messages(len(backward)) == backward


async def test_messages_before_set_handlers_are_buffered(transports: tuple[Any, Any]) -> None:
    a, b = transports
    offer = await a.create_offer()
    answer = await b.accept_offer(offer.sdp)
    await offer.accept_answer(answer.sdp)
    link_a, link_b = await asyncio.gather(
        offer.wait_open(OPEN_TIMEOUT_S), answer.wait_open(OPEN_TIMEOUT_S)
    )
    ca = Collector()
    link_a.set_handlers(ca.on_message, ca.on_close)
    link_a.send(b"early-1")
    link_a.send(b"early-2")
    link_a.send(b"ping")
    await settle()  # (memory: the three now sit in b's inbound buffer; webrtc: some may)
    cb = Collector()

    def echo(data: bytes) -> None:
        cb.on_message(data)
        if data == b"ping":
            link_b.send(b"pong")

    link_b.set_handlers(echo, cb.on_close)
    assert await cb.wait_messages(3) == [b"early-1", b"early-2", b"ping"]
    assert await ca.wait_messages(1) == [b"pong"]


async def test_oversize_send_raises_and_link_stays_usable(transports: tuple[Any, Any]) -> None:
    a, b = transports
    link_a, _, _, cb = await connect(a, b)
    with pytest.raises(MessageTooLarge):
        link_a.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert issubclass(MessageTooLarge, ValueError)
    assert link_a.is_open
    link_a.send(b"after")
    assert await cb.wait_messages(1) == [b"after"]


async def test_close_fires_on_close_once_on_both_sides(transports: tuple[Any, Any]) -> None:
    a, b = transports
    link_a, ca, link_b, cb = await connect(a, b)
    link_a.close()
    assert not link_a.is_open
    await ca.wait_closed()
    await cb.wait_closed()
    assert not link_b.is_open
    link_a.close()  # idempotent
    link_b.close()
    await settle()
    assert (ca.closes, cb.closes) == (1, 1)
    assert a.open_connections == 0
    assert b.open_connections == 0


async def test_send_after_close_raises_link_closed(transports: tuple[Any, Any]) -> None:
    a, b = transports
    link_a, ca, link_b, cb = await connect(a, b)
    link_b.close()
    with pytest.raises(LinkClosed):
        link_b.send(b"x")
    await cb.wait_closed()
    await ca.wait_closed()
    with pytest.raises(LinkClosed):
        link_a.send(b"x")


async def test_offer_wait_open_times_out_without_answer(transports: tuple[Any, Any]) -> None:
    a, _ = transports
    offer = await a.create_offer()
    timeout_s = 0.3
    start = time.monotonic()
    with pytest.raises(DialTimeout) as raised:
        await offer.wait_open(timeout_s)
    if isinstance(a, WebRTCTransport):
        assert "no answer applied yet" in str(raised.value)
    elapsed = time.monotonic() - start
    assert timeout_s <= elapsed < timeout_s + 1.0
    assert a.open_connections == 0
    with pytest.raises(DialFailed):
        await offer.accept_answer("v=0\r\n")
    if isinstance(a, WebRTCTransport):
        await a.close()  # waits for the peer-connection close the timeout started
        assert offer._link._pc.connectionState == "closed"
        assert offer._link._pc.iceConnectionState == "closed"


async def test_answer_wait_open_times_out_when_answer_is_dropped(
    transports: tuple[Any, Any],
) -> None:
    a, b = transports
    offer = await a.create_offer()
    answer = await b.accept_offer(offer.sdp)  # the answer never reaches the offerer
    with pytest.raises(DialTimeout):
        await answer.wait_open(0.3)
    assert b.open_connections == 0
    offer.cancel()
    assert a.open_connections == 0


async def test_bad_offer_and_answer_are_refused(transports: tuple[Any, Any]) -> None:
    a, b = transports
    for garbage in ["", "hello", "v=0\r\nnonsense", "x" * 100_000]:
        with pytest.raises(DialFailed):
            await b.accept_offer(garbage)
    offer = await a.create_offer()
    with pytest.raises(DialFailed):
        await offer.accept_answer("not an answer")
    offer.cancel()
    assert b.open_connections == 0


async def test_burst_beyond_high_water_mark_uses_queue_and_all_arrive(
    transports: tuple[Any, Any],
) -> None:
    a, b = transports
    link_a, _, _, cb = await connect(a, b)
    size = 8 * 1024
    count = 2 * BUFFERED_AMOUNT_HIGH_BYTES // size + 50
    messages = [i.to_bytes(4, "big") * (size // 4) for i in range(count)]
    for msg in messages:
        link_a.send(msg)
    assert link_a.send_queue_peak > 0  # the backpressure path was taken
    assert await cb.wait_messages(count) == messages


async def test_link_busy_when_queue_overflows(transports: tuple[Any, Any]) -> None:
    a, b = transports
    link_a, _, _, cb = await connect(a, b)
    size = 4 * 1024
    limit = BUFFERED_AMOUNT_HIGH_BYTES // size + SEND_QUEUE_MAX_MESSAGES
    # Synchronous burst: nothing drains between sends, so the queue must overflow.
    sent = send_until_busy(link_a, size, limit + 10)
    assert BUFFERED_AMOUNT_HIGH_BYTES // size <= len(sent) <= limit
    assert link_a.is_open
    assert await cb.wait_messages(len(sent)) == sent  # everything accepted still arrives


# --- memory-only: a stalled receiver -----------------------------------------------------------


async def test_memory_stalled_receiver_backs_up_sender_then_recovers() -> None:
    hub = MemoryHub()
    a, b = MemoryTransport(hub), MemoryTransport(hub)
    link_a, _, link_b, cb = await connect(a, b)
    link_b.pause_reading()
    size = 32 * 1024
    sent: list[bytes] = []
    for _ in range(100):  # let delivery run between bursts: the stall, not the burst, must bite
        batch = send_until_busy(link_a, size, 16, allow_no_busy=True, first=len(sent))
        sent.extend(batch)
        if len(batch) < 16:
            break
        await asyncio.sleep(0)
    else:
        raise AssertionError("a stalled receiver never made the sender busy")
    assert cb.messages == []
    link_b.resume_reading()
    assert await cb.wait_messages(len(sent)) == sent
    link_a.send(b"again")
    assert (await cb.wait_messages(len(sent) + 1))[-1] == b"again"
    await a.close()
    await b.close()


# --- WebRTC configuration ----------------------------------------------------------------------


def test_parse_ice_server_urls() -> None:
    stun = parse_ice_server("stun:127.0.0.1:3478")
    assert (stun.urls, stun.username, stun.credential) == ("stun:127.0.0.1:3478", None, None)
    turn = parse_ice_server("turn:alice:s%40cret@turn.example.org:3478?transport=udp")
    assert turn.urls == "turn:turn.example.org:3478?transport=udp"
    assert (turn.username, turn.credential) == ("alice", "s@cret")
    for bad in ["http://x", "stun", "stun:u:p@host", "turn:alice@host", "turn:", "stun:h:notaport"]:
        with pytest.raises(ValueError, match="ICE server"):
            parse_ice_server(bad)


def test_bad_ice_address_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        WebRTCTransport(["localhost"])


async def test_ice_hook_only_applies_inside_a_transport() -> None:
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection

    WebRTCTransport(["127.0.0.1"])  # installs the hook
    # Outside a transport's gathering the hook defers to aioice, which never offers loopback.
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("x")
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        assert " 127.0.0.1 " not in pc.localDescription.sdp
    finally:
        await pc.close()
    # A transport's offer carries exactly its configured addresses.
    async with WebRTCTransport(["127.0.0.1"]) as transport:
        offer = await transport.create_offer()
        candidates = [ln for ln in offer.sdp.splitlines() if ln.startswith("a=candidate:")]
        assert len(candidates) == 1
        assert " 127.0.0.1 " in candidates[0]
        offer.cancel()


# --- WebRTC between two OS processes -----------------------------------------------------------

CHILD = r"""
import asyncio, json, sys
from node.transport.webrtc import WebRTCTransport, parse_ice_server

async def main() -> None:
    loop = asyncio.get_running_loop()
    transport = WebRTCTransport(["127.0.0.1"])
    offer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))["sdp"]
    answer = await transport.accept_offer(offer)
    print(json.dumps({"sdp": answer.sdp}), flush=True)
    link = await answer.wait_open(10.0)
    done = loop.create_future()
    link.set_handlers(lambda d: link.send(b"echo:" + d), lambda: done.set_result(None))
    await done
    await transport.close()

asyncio.run(main())
"""


async def test_two_processes_connect_over_webrtc() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    transport = WebRTCTransport(["127.0.0.1"])
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        offer = await transport.create_offer()
        child.stdin.write(json.dumps({"sdp": offer.sdp}).encode() + b"\n")
        await child.stdin.drain()
        async with asyncio.timeout(20):
            line = await child.stdout.readline()
        await offer.accept_answer(json.loads(line)["sdp"])
        link = await offer.wait_open(OPEN_TIMEOUT_S)
        collector = Collector()
        link.set_handlers(collector.on_message, collector.on_close)
        link.send(b"hello from parent")
        assert await collector.wait_messages(1) == [b"echo:hello from parent"]
        link.close()
        async with asyncio.timeout(20):
            assert await child.wait() == 0
    finally:
        await reap(child)
        await transport.close()
