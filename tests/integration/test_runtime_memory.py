"""The node runtime over the in-memory transport (real signaling server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from node.config import Config
from node.identity import Identity
from node.runtime import NodeRuntime, NodeSettings
from node.transport.memory import MemoryHub, MemoryTransport
from signaling.server import SignalingServer


@pytest.fixture
async def signaling() -> AsyncIterator[str]:
    server = SignalingServer("127.0.0.1", 0)
    await server.start()
    try:
        yield f"ws://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def start_nodes(
    url: str, n: int, config: Config | None = None, **settings: object
) -> list[NodeRuntime]:
    hub = MemoryHub()
    nodes = [
        NodeRuntime(
            Identity.generate(),
            MemoryTransport(hub),
            config,
            NodeSettings(signaling_url=url, **settings),  # type: ignore[arg-type]
        )
        for _ in range(n)
    ]
    for node in nodes:
        await node.start()
        await node.signaling.wait_registered(10)
    return nodes


async def wait_until(cond: object, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        # Routing-table growth has no event of its own: poll (tests only).
        while not cond():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_store_get_and_rtt_over_the_memory_transport(signaling: str) -> None:
    nodes = await start_nodes(signaling, 6)
    try:
        await wait_until(lambda: all(len(n.proto.table) >= 5 for n in nodes))  # type: ignore[union-attr]
        stored = await nodes[0].store(key="k", value=b"v")
        assert stored["acks"] >= stored["quorum"] >= 1
        for node in nodes:
            got = await node.get(key="k")
            assert got["value"] == b"v"
        for other in nodes:
            if other is not nodes[1]:
                pong = await nodes[1].ping(node_id=other.node_id.hex())
                assert pong["rtt_ms"] >= 0
        peers = (await nodes[1].peers())["peers"]
        assert len(peers) == 5
        assert all(p["rtt_ms"] is not None and p["rtt_ms"] >= 0 for p in peers)
        assert all(p["in_routing_table"] for p in peers)
    finally:
        for node in nodes:
            await node.stop()


async def test_connection_cap_closes_peers_the_routing_table_does_not_hold(
    signaling: str,
) -> None:
    # k = 1: most peers end up in replacement caches, not in the table, so the cap may close them.
    nodes = await start_nodes(signaling, 6, Config(k=1), max_connections=1, bootstrap_peers=5)
    try:
        hub_node = nodes[0]
        for other in nodes[1:]:
            await hub_node.dial(other.node_id)
        table = hub_node.proto.table  # type: ignore[union-attr]
        await wait_until(lambda: all(p in table for p in hub_node._peers))
        # Everything still open is needed by the routing table; the rest was closed.
        assert hub_node.rstats.connections_evicted >= 1
        assert all(p in table for p in hub_node._peers)
    finally:
        for node in nodes:
            await node.stop()


@pytest.mark.parametrize("slow_lower", [False, True], ids=["offers-cross", "lower-still-gathering"])
async def test_glare_two_nodes_dialing_each_other_end_with_one_link(
    signaling: str, slow_lower: bool
) -> None:
    hub = MemoryHub()
    nodes = []
    for _ in range(2):
        node = NodeRuntime(Identity.generate(), MemoryTransport(hub), None, NodeSettings(signaling))
        # No bootstrap dialing: the two dials below are the only ones.
        node._bootstrap_loop = lambda: asyncio.sleep(0)  # type: ignore[method-assign]
        await node.start()
        await node.signaling.wait_registered(10)
        nodes.append(node)
    a, b = sorted(nodes, key=lambda n: n.node_id)
    # The lower ID's offer takes a while (ICE gathering does): the higher ID's offer reaches it
    # in the meantime, and the lower ID must still win.
    create_offer = a.transport.create_offer

    async def slow_offer() -> object:
        await asyncio.sleep(0.2)
        return await create_offer()

    if slow_lower:
        a.transport.create_offer = slow_offer  # type: ignore[method-assign]
    try:
        ok_a, ok_b = await asyncio.gather(a.dial(b.node_id), b.dial(a.node_id))
        assert ok_a
        assert ok_b
        assert a.rstats.dials_started == b.rstats.dials_started == 1  # both really dialed
        # One connection, not two: the higher ID dropped its offer and answered the lower's.
        await asyncio.sleep(0.3)  # a second connection, if any, would have opened by now
        assert a.rstats.links_opened == b.rstats.links_opened == 1
        assert list(a._peers) == [b.node_id]
        assert list(b._peers) == [a.node_id]
        # Both sides kept the same connection (the lower ID's offer won).
        assert a._peers[b.node_id].cid == b._peers[a.node_id].cid
        pong = await a.ping(node_id=b.node_id.hex())
        assert pong["rtt_ms"] >= 0
    finally:
        await a.stop()
        await b.stop()


async def test_a_superseded_dial_that_never_opens_fails_cleanly(signaling: str) -> None:
    # Every connection attempt is lost: the glare loser's dial waits for the peer's connection,
    # which never opens. dial() must answer False at its deadline — not raise CancelledError
    # (which used to kill the bootstrap loop silently).
    hub = MemoryHub(dial_loss=1.0)
    nodes = []
    for _ in range(2):
        node = NodeRuntime(
            Identity.generate(),
            MemoryTransport(hub),
            None,
            NodeSettings(signaling, dial_timeout_s=0.5),
        )
        node._bootstrap_loop = lambda: asyncio.sleep(0)  # type: ignore[method-assign]
        await node.start()
        await node.signaling.wait_registered(10)
        nodes.append(node)
    a, b = nodes
    try:
        results = await asyncio.wait_for(
            asyncio.gather(a.dial(b.node_id), b.dial(a.node_id), return_exceptions=True), 10
        )
        assert results == [False, False]
        assert not a._dials
        assert not b._dials
    finally:
        await a.stop()
        await b.stop()
