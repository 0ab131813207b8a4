"""The in-memory transport's own knobs (latency, dial loss) and the shared SendQueue rule."""

from __future__ import annotations

import asyncio
import random

import pytest

from node.transport.base import (
    BUFFERED_AMOUNT_HIGH_BYTES,
    MAX_MESSAGE_BYTES,
    SEND_QUEUE_MAX_BYTES,
    SEND_QUEUE_MAX_MESSAGES,
    DialFailed,
    DialTimeout,
    LinkBusy,
    MessageTooLarge,
    SendQueue,
)
from node.transport.memory import MemoryHub, MemoryLink, MemoryTransport

pytestmark = pytest.mark.timeout(20)


# --- SendQueue (pure) --------------------------------------------------------------------------


class FakeChannel:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.buffered += len(data)


def test_send_queue_writes_directly_below_high_water_mark() -> None:
    channel = FakeChannel()
    queue = SendQueue(channel.write, lambda: channel.buffered)
    queue.send(b"a")
    queue.send(b"b")
    assert channel.written == [b"a", b"b"]
    assert len(queue) == 0
    assert queue.peak_messages == 0


def test_send_queue_queues_at_high_water_mark_and_drains_in_order() -> None:
    channel = FakeChannel()
    queue = SendQueue(channel.write, lambda: channel.buffered)
    channel.buffered = BUFFERED_AMOUNT_HIGH_BYTES
    for i in range(5):
        queue.send(bytes([i]))
    assert channel.written == []
    assert len(queue) == 5
    channel.buffered = 0
    queue.send(b"late")  # queue not empty: must not overtake the queued ones
    assert channel.written == []
    queue.drain()
    assert channel.written == [bytes([i]) for i in range(5)] + [b"late"]
    assert queue.peak_messages == 6


def test_send_queue_drain_stops_again_at_high_water_mark() -> None:
    channel = FakeChannel()
    queue = SendQueue(channel.write, lambda: channel.buffered)
    channel.buffered = BUFFERED_AMOUNT_HIGH_BYTES
    big = b"x" * MAX_MESSAGE_BYTES
    for _ in range(4):
        queue.send(big)
    channel.buffered = BUFFERED_AMOUNT_HIGH_BYTES - 2 * MAX_MESSAGE_BYTES + 1
    queue.drain()
    assert len(channel.written) == 2
    assert len(queue) == 2


def test_send_queue_bounded_by_messages_and_bytes() -> None:
    channel = FakeChannel()
    queue = SendQueue(channel.write, lambda: channel.buffered)
    channel.buffered = BUFFERED_AMOUNT_HIGH_BYTES
    for _ in range(SEND_QUEUE_MAX_MESSAGES):
        queue.send(b"m")
    with pytest.raises(LinkBusy):
        queue.send(b"m")

    queue.clear()
    big = b"x" * MAX_MESSAGE_BYTES
    fits = SEND_QUEUE_MAX_BYTES // MAX_MESSAGE_BYTES
    assert fits < SEND_QUEUE_MAX_MESSAGES  # the byte cap is the one that bites here
    for _ in range(fits):
        queue.send(big)
    with pytest.raises(LinkBusy):
        queue.send(big)
    assert len(queue) == fits


def test_send_queue_refuses_oversize() -> None:
    channel = FakeChannel()
    queue = SendQueue(channel.write, lambda: channel.buffered)
    with pytest.raises(MessageTooLarge):
        queue.send(b"x" * (MAX_MESSAGE_BYTES + 1))
    queue.send(b"x" * MAX_MESSAGE_BYTES)
    assert len(channel.written) == 1


# --- MemoryHub knobs ---------------------------------------------------------------------------


async def dial(a: MemoryTransport, b: MemoryTransport) -> tuple[MemoryLink, MemoryLink]:
    offer = await a.create_offer()
    answer = await b.accept_offer(offer.sdp)
    await offer.accept_answer(answer.sdp)
    return await asyncio.gather(offer.wait_open(1.0), answer.wait_open(1.0))


async def test_latency_delays_delivery_and_keeps_order() -> None:
    hub = MemoryHub(latency_s=0.05)
    a, b = MemoryTransport(hub), MemoryTransport(hub)
    link_a, link_b = await dial(a, b)
    loop = asyncio.get_running_loop()
    got: list[tuple[float, bytes]] = []
    done = loop.create_future()

    def on_message(data: bytes) -> None:
        got.append((loop.time(), data))
        if len(got) == 3:
            done.set_result(None)

    link_b.set_handlers(on_message, lambda: None)
    start = loop.time()
    for msg in (b"1", b"2", b"3"):
        link_a.send(msg)
    await asyncio.wait_for(done, 2.0)
    assert [d for _, d in got] == [b"1", b"2", b"3"]
    assert got[0][0] - start >= 0.05 - 0.005  # loop clock granularity
    await a.close()
    await b.close()


async def test_dial_loss_one_never_opens() -> None:
    hub = MemoryHub(dial_loss=1.0, rng=random.Random(1))
    a, b = MemoryTransport(hub), MemoryTransport(hub)
    offer = await a.create_offer()
    answer = await b.accept_offer(offer.sdp)
    await offer.accept_answer(answer.sdp)
    with pytest.raises(DialTimeout):
        await offer.wait_open(0.05)
    with pytest.raises(DialTimeout):
        await answer.wait_open(0.05)
    assert (a.open_connections, b.open_connections) == (0, 0)


async def test_tokens_are_single_use_and_offer_bound() -> None:
    hub = MemoryHub()
    a, b = MemoryTransport(hub), MemoryTransport(hub)
    offer1 = await a.create_offer()
    offer2 = await a.create_offer()
    answer1 = await b.accept_offer(offer1.sdp)
    with pytest.raises(DialFailed):
        await offer2.accept_answer(answer1.sdp)  # an answer to another offer
    await offer1.accept_answer(answer1.sdp)
    with pytest.raises(DialFailed):
        await offer1.accept_answer(answer1.sdp)  # twice
    offer2.cancel()
    with pytest.raises(DialFailed):
        await b.accept_offer(offer2.sdp)  # cancelled
    link_a, link_b = await asyncio.gather(offer1.wait_open(1.0), answer1.wait_open(1.0))
    assert link_a.is_open
    assert link_b.is_open
    await a.close()
    await b.close()
    assert not link_a.is_open
    assert not link_b.is_open


async def test_closed_transport_refuses_new_dials() -> None:
    hub = MemoryHub()
    a = MemoryTransport(hub)
    await a.close()
    with pytest.raises(Exception, match="transport is closed"):
        await a.create_offer()


def test_hub_validates_knobs() -> None:
    with pytest.raises(ValueError, match="latency_s"):
        MemoryHub(latency_s=-1)
    with pytest.raises(ValueError, match="dial_loss"):
        MemoryHub(dial_loss=1.5)


async def test_handler_exception_does_not_break_the_link() -> None:
    hub = MemoryHub()
    a, b = MemoryTransport(hub), MemoryTransport(hub)
    link_a, link_b = await dial(a, b)
    got: list[bytes] = []
    done = asyncio.get_running_loop().create_future()

    def on_message(data: bytes) -> None:
        got.append(data)
        if data == b"boom":
            raise RuntimeError("handler bug")
        done.set_result(None)

    link_b.set_handlers(on_message, lambda: None)
    link_a.send(b"boom")
    link_a.send(b"fine")
    await asyncio.wait_for(done, 1.0)
    assert got == [b"boom", b"fine"]
    assert link_b.is_open
    await a.close()
    await b.close()
