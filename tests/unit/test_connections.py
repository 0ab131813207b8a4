"""The connection manager alone, over the memory transport, through its public methods.

A ``FakeCore`` stands for the runtime (``CoreHooks``) and records what the manager reports; a
``Directory`` stands for the signaling server: it hands offers and answers to the manager
registered under the target ID (which a test can make an impostor).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from node import codec
from node.connections import ConnectionLimits, ConnectionManager
from node.events import Notice, PeerConnected, PeerDisconnected
from node.identity import Identity
from node.ids import NodeId
from node.messages import Ping
from node.transport.base import CloseReason, LinkBase
from node.transport.memory import MemoryHub, MemoryTransport


@dataclass
class FakeCore:
    needed_peers: set[NodeId] = field(default_factory=set)
    up: list[NodeId] = field(default_factory=list)
    down: list[NodeId] = field(default_factory=list)
    lost: list[NodeId] = field(default_factory=list)
    unreachable_peers: list[NodeId] = field(default_factory=list)
    received_data: list[tuple[NodeId, bytes]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    got_data: asyncio.Event = field(default_factory=asyncio.Event)

    def link_up(self, peer: NodeId) -> None:
        self.up.append(peer)

    def link_down(self, peer: NodeId) -> None:
        self.down.append(peer)

    def link_lost(self, peer: NodeId) -> None:
        self.lost.append(peer)

    def unreachable(self, peer: NodeId) -> None:
        self.unreachable_peers.append(peer)

    def received(self, peer: NodeId, data: bytes) -> None:
        self.received_data.append((peer, data))
        self.got_data.set()

    def relay_signal(self, peer: NodeId, payload: bytes, via: NodeId | None) -> bool:
        return False  # no DHT in these tests: the directory carries every offer and answer

    def needed(self, peer: NodeId) -> bool:
        return peer in self.needed_peers

    def notify(self, notice: Notice) -> None:
        self.notices.append(notice)

    def pump(self) -> None:
        pass


class Directory:
    """A signaling server in miniature: node ID → the manager that receives its offers."""

    def __init__(self) -> None:
        self.hub = MemoryHub()
        self.members: dict[NodeId, ConnectionManager] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.offer_delay_s: dict[NodeId, float] = {}

    def port(self, me: NodeId) -> DirectoryPort:
        return DirectoryPort(self, me)


@dataclass
class DirectoryPort:
    directory: Directory
    me: NodeId
    connected: bool = True

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def peers(self, n: int) -> list[NodeId]:
        return [p for p in self.directory.members if p != self.me][:n]

    async def send_offer(self, to: NodeId, cid: str, sdp: str) -> None:
        target = self.directory.members.get(to)
        if target is not None:
            task = asyncio.get_running_loop().create_task(target.on_offer(self.me, cid, sdp))
            self.directory.tasks.add(task)
            task.add_done_callback(self.directory.tasks.discard)

    async def send_answer(self, to: NodeId, cid: str, sdp: str) -> None:
        target = self.directory.members.get(to)
        if target is not None:
            asyncio.get_running_loop().call_soon(target.on_answer, self.me, cid, sdp)


@dataclass
class Member:
    manager: ConnectionManager
    core: FakeCore

    @property
    def id(self) -> NodeId:
        return self.manager.node_id


def member(
    directory: Directory,
    *,
    register_as: NodeId | None = None,
    transport: MemoryTransport | None = None,
    **limits: float,
) -> Member:
    identity = Identity.generate()
    core = FakeCore()
    manager = ConnectionManager(
        identity,
        transport or MemoryTransport(directory.hub),
        core,
        ConnectionLimits(
            dial_timeout_s=limits.get("dial_timeout_s", 2.0),
            max_connections=int(limits.get("max_connections", 64)),
            min_links=int(limits.get("min_links", 8)),
            link_idle_s=limits.get("link_idle_s", 0.0),
        ),
    )
    claimed = register_as or identity.node_id
    manager.signaling = directory.port(claimed)
    directory.members[claimed] = manager
    return Member(manager, core)


@pytest.fixture
async def directory() -> AsyncIterator[Directory]:
    """The test's directory; every manager registered in it at the end is closed then."""
    d = Directory()
    yield d
    for manager in d.members.values():
        await manager.close_all()


async def test_a_dial_opens_one_authenticated_link_and_carries_messages(
    directory: Directory,
) -> None:
    a, b = member(directory), member(directory)
    assert await a.manager.dial(b.id)
    await asyncio.sleep(0.05)  # the answerer registers on the HELLO it receives
    assert [p.id for p in a.manager.peers()] == [b.id]
    assert [p.id for p in b.manager.peers()] == [a.id]
    assert a.manager.peers()[0].cid == b.manager.peers()[0].cid
    assert (a.core.up, b.core.up) == ([b.id], [a.id])
    assert a.core.notices == [PeerConnected(b.id)]
    a.manager.send(b.id, b"hello there")
    await asyncio.wait_for(b.core.got_data.wait(), 2)
    assert b.core.received_data == [(a.id, b"hello there")]
    assert a.manager.stats.links_opened == b.manager.stats.links_opened == 1
    assert a.manager.dials_in_progress == 0


async def test_send_without_a_link_dials_and_flushes_the_queue(directory: Directory) -> None:
    a, b = member(directory), member(directory)
    a.manager.send(b.id, b"one")
    a.manager.send(b.id, b"two")
    assert a.manager.dials_in_progress == 1
    async with asyncio.timeout(5):
        while len(b.core.received_data) < 2:  # noqa: ASYNC110 (no event for "both arrived")
            await asyncio.sleep(0.01)
    assert b.core.received_data == [(a.id, b"one"), (a.id, b"two")]
    assert a.manager.stats.dials_started == 1


@pytest.mark.parametrize("slow_lower", [False, True], ids=["offers-cross", "lower-still-gathering"])
async def test_glare_ends_with_one_link_from_the_lower_ids_offer(
    directory: Directory, slow_lower: bool
) -> None:
    low, high = sorted([member(directory), member(directory)], key=lambda m: m.id)
    if slow_lower:
        # The lower ID's offer takes a while (ICE gathering does): the higher ID's offer reaches
        # it in the meantime, and the lower ID must still win.
        slow = SlowOffers(directory.hub, 0.2)
        directory.members.pop(low.id)
        low = member(directory, transport=slow)
        low, high = sorted([low, high], key=lambda m: m.id)
    ok = await asyncio.gather(low.manager.dial(high.id), high.manager.dial(low.id))
    assert ok == [True, True]
    await asyncio.sleep(0.3)  # a second connection, if any, would have opened by now
    assert low.manager.stats.dials_started == high.manager.stats.dials_started == 1
    assert low.manager.stats.links_opened == high.manager.stats.links_opened == 1
    assert [p.id for p in low.manager.peers()] == [high.id]
    assert [p.id for p in high.manager.peers()] == [low.id]
    assert low.manager.peers()[0].cid == high.manager.peers()[0].cid


class SlowOffers(MemoryTransport):
    def __init__(self, hub: MemoryHub, delay_s: float) -> None:
        super().__init__(hub)
        self.delay_s = delay_s

    async def create_offer(self):  # type: ignore[no-untyped-def]
        await asyncio.sleep(self.delay_s)
        return await super().create_offer()


async def test_a_hello_from_the_wrong_key_is_refused(directory: Directory) -> None:
    a = member(directory)
    victim = Identity.generate().node_id
    # An impostor claims `victim`'s ID towards the signaling (it gets the offers meant for the
    # victim and answers as the victim) but cannot sign a HELLO with the victim's key.
    impostor = member(directory, register_as=victim)
    assert not await a.manager.dial(victim)
    await asyncio.sleep(0.05)
    assert a.manager.stats.hellos_rejected == 1
    # The impostor refuses too: a's HELLO names the victim as its receiver.
    assert impostor.manager.stats.hellos_rejected == 1
    assert a.manager.peers() == ()
    assert impostor.manager.peers() == ()
    assert a.core.up == []
    assert a.core.unreachable_peers == [victim]
    assert a.manager.stats.dials_failed == 1


async def test_the_cap_closes_the_least_recently_used_peer_the_core_does_not_need(
    directory: Directory,
) -> None:
    hubnode = member(directory, max_connections=2)
    needed, older, newer = (member(directory) for _ in range(3))
    hubnode.core.needed_peers.add(needed.id)
    others = (needed, older, newer)
    for other in others:
        assert await hubnode.manager.dial(other.id)
        await asyncio.sleep(0.01)  # distinct last-used times
    assert {p.id for p in hubnode.manager.peers()} == {needed.id, newer.id}
    assert hubnode.manager.stats.connections_evicted == 1
    assert PeerDisconnected(older.id, "connection cap") in hubnode.core.notices
    assert hubnode.core.down == [older.id]
    await asyncio.sleep(0.05)
    assert older.manager.peers() == ()  # closed on both sides


async def test_a_link_that_lost_liveness_reports_the_peer_lost(directory: Directory) -> None:
    a, b = member(directory), member(directory)
    assert await a.manager.dial(b.id)
    await asyncio.sleep(0.05)
    link = a.manager.link(b.id)
    assert isinstance(link, LinkBase)
    link._shutdown("silent", CloseReason.LIVENESS_LOST)  # what WebRTC's liveness does
    await asyncio.sleep(0.05)
    assert (a.core.lost, a.core.down) == ([b.id], [])
    assert PeerDisconnected(b.id, "liveness lost") in a.core.notices
    assert b.core.down == [a.id]  # the other side sees an ordinary close
    assert b.core.lost == []


async def test_sweep_closes_idle_links_beyond_the_closest_and_keepalives_do_not_count(
    directory: Directory,
) -> None:
    a = member(directory, min_links=1, link_idle_s=0.2)
    others = [member(directory) for _ in range(3)]
    for other in others:
        assert await a.manager.dial(other.id)
    busy = others[2]
    a.core.needed_peers.add(busy.id)
    await asyncio.sleep(0.3)
    for other in others:  # keepalives only: the links stay idle
        a.manager.send(other.id, codec.encode(Ping(1)))
    closest = min(others, key=lambda m: int.from_bytes(m.id, "big") ^ int.from_bytes(a.id))
    assert a.manager.sweep() == len({o.id for o in others} - {closest.id, busy.id})
    assert {p.id for p in a.manager.peers()} == {closest.id, busy.id}
    assert a.manager.stats.links_closed_idle >= 1
    assert any(isinstance(n, PeerDisconnected) and n.reason == "idle" for n in a.core.notices)


async def test_only_the_closest_links_are_watched_while_idle(directory: Directory) -> None:
    a = member(directory, min_links=2)
    others = [member(directory) for _ in range(5)]
    for other in others:
        assert await a.manager.dial(other.id)

    def watched() -> set[NodeId]:
        out = set()
        for o in others:
            link = a.manager.link(o.id)
            if link is not None and getattr(link, "watched", True):
                out.add(o.id)
        return out

    own = int.from_bytes(a.id, "big")
    by_distance = sorted(others, key=lambda m: int.from_bytes(m.id, "big") ^ own)
    assert watched() == {by_distance[0].id, by_distance[1].id}
    a.manager.close(by_distance[0].id, "test")  # the next closest takes its place
    assert watched() == {by_distance[1].id, by_distance[2].id}


async def test_a_draining_manager_neither_dials_nor_answers(directory: Directory) -> None:
    a, b = member(directory), member(directory)
    a.manager.drain()
    assert not await a.manager.dial(b.id)
    assert not await b.manager.dial(a.id)  # a ignores the offer
    assert a.manager.peers() == ()


async def test_a_dial_to_nobody_fails_at_its_deadline_and_reports_unreachable(
    directory: Directory,
) -> None:
    a = member(directory, dial_timeout_s=0.3)
    nobody = Identity.generate().node_id
    a.manager.send(nobody, b"lost")
    assert not await asyncio.wait_for(a.manager.dial(nobody), 5)
    assert a.core.unreachable_peers == [nobody]
    assert a.manager.dials_in_progress == 0
    assert a.manager.stats.dials_failed == 1
    assert a.manager.failure(nobody) == "no answer within 0.3 s"


async def test_close_all_resolves_pending_dials(directory: Directory) -> None:
    a = member(directory, dial_timeout_s=30)
    dial = asyncio.ensure_future(a.manager.dial(Identity.generate().node_id))
    await asyncio.sleep(0.05)
    await a.manager.close_all()
    assert await asyncio.wait_for(dial, 2) is False


async def test_a_hello_of_another_major_version_is_refused_with_a_reason(
    directory: Directory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = member(directory), member(directory)
    b.manager.protocol_version = (2, 0)
    with caplog.at_level("INFO", logger="node.connections"):
        assert not await a.manager.dial(b.id)
        await asyncio.sleep(0.05)
    assert a.manager.stats.hellos_bad_version == b.manager.stats.hellos_bad_version == 1
    assert a.manager.stats.hellos_rejected == b.manager.stats.hellos_rejected == 1
    assert a.manager.peers() == b.manager.peers() == ()
    assert "protocol version 2.0 is not supported (ours is 1.x)" in caplog.text
    assert "protocol version 1.0 is not supported (ours is 2.x)" in caplog.text


async def test_a_later_minor_version_is_accepted(directory: Directory) -> None:
    a, b = member(directory), member(directory)
    b.manager.protocol_version = (1, 7)
    assert await a.manager.dial(b.id)
    assert a.manager.stats.hellos_bad_version == 0
