"""The node runtime over the in-memory transport (real signaling server on 127.0.0.1).

Nodes are assembled as the process assembles them (``peer.node.PeerNode``: runtime, signaling
client, control adapter) and driven through public seams only: the typed runtime operations,
the control adapter (``NodeAPI``) and the connection manager's views and counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from control.errors import CommandError, ErrorCode
from node.config import Config
from node.errors import BadArgument
from node.identity import Identity
from node.runtime import NodeSettings, TooLarge
from node.transport.memory import MemoryHub, MemoryTransport
from peer.node import PeerNode
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
    url: str, n: int, config: Config | None = None, hub: MemoryHub | None = None, **settings: object
) -> list[PeerNode]:
    hub = hub or MemoryHub()
    nodes = [
        PeerNode(
            Identity.generate(),
            MemoryTransport(hub),
            config=config,
            settings=NodeSettings(**settings),  # type: ignore[arg-type]
            signaling_url=url,
        )
        for _ in range(n)
    ]
    for node in nodes:
        await node.start()
        assert node.signaling is not None
        await node.signaling.wait_registered(10)
    return nodes


async def stop_nodes(nodes: list[PeerNode]) -> None:
    for node in nodes:
        await node.stop()


async def wait_until(cond: object, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        # Routing-table growth has no event of its own: poll (tests only).
        while not cond():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_store_get_and_rtt_over_the_memory_transport(signaling: str) -> None:
    nodes = await start_nodes(signaling, 6)
    try:
        await wait_until(lambda: all(len(n.runtime.core.table) >= 5 for n in nodes))
        stored = await nodes[0].api.store(key="k", value=b"v")
        assert stored["acks"] >= stored["quorum"] >= 1
        for node in nodes:
            got = await node.api.get(key="k")
            assert got["value"] == b"v"
        for other in nodes:
            if other is not nodes[1]:
                pong = await nodes[1].api.ping(node_id=other.runtime.node_id.hex())
                assert pong["rtt_ms"] >= 0
        peers = (await nodes[1].api.peers())["peers"]
        assert len(peers) == 5
        assert all(p["rtt_ms"] is not None and p["rtt_ms"] >= 0 for p in peers)
        assert all(p["in_routing_table"] for p in peers)
        typed = nodes[1].runtime.peers()
        assert sorted(p.id.hex() for p in typed) == [p["id"] for p in peers]
    finally:
        await stop_nodes(nodes)


async def test_typed_operations_and_their_errors(signaling: str) -> None:
    nodes = await start_nodes(signaling, 3)
    a, b = nodes[0], nodes[1]
    try:
        await wait_until(lambda: all(len(n.runtime.core.table) >= 2 for n in nodes))
        rt = a.runtime
        result = await rt.store_value("typed", b"x")
        assert result.ok
        got = await b.runtime.get_value("typed")
        assert got.record is not None
        assert got.record.data == b"x"
        assert (await b.runtime.get_value("missing")).record is None
        with pytest.raises(TooLarge):
            await rt.store_value("big", b"x" * (rt.config.max_record_data_bytes + 1))
        with pytest.raises(BadArgument):
            await rt.ping(rt.node_id)
        with pytest.raises(BadArgument):
            rt.join_topic("t", 70000, b"")
        snap = rt.routing()
        assert snap.size == len(rt.core.table) >= 2
        assert snap.buckets_used >= 1
        # The adapter maps the same refusals to control-plane codes.
        with pytest.raises(CommandError) as too_large:
            await a.api.store(key="big", value=b"x" * (rt.config.max_record_data_bytes + 1))
        assert too_large.value.code == ErrorCode.TOO_LARGE
        with pytest.raises(CommandError) as missing:
            await b.api.get(key="missing")
        assert missing.value.code == ErrorCode.NOT_FOUND
        with pytest.raises(CommandError) as own:
            await a.api.connect(node_id=rt.node_id.hex())
        assert own.value.code == ErrorCode.BAD_ARGS
        with pytest.raises(CommandError) as bad_id:
            await a.api.find(node_id="zz")
        assert bad_id.value.code == ErrorCode.BAD_ARGS
    finally:
        await stop_nodes(nodes)


async def test_notices_reach_subscribers_with_topic_and_payload(signaling: str) -> None:
    nodes = await start_nodes(signaling, 2)
    seen: list[tuple[str, dict[str, object]]] = []
    a = nodes[0]
    a.runtime.subscribe(lambda n: seen.append(a.api.event(n)))
    try:
        await wait_until(lambda: all(len(n.runtime.core.table) >= 1 for n in nodes))
        await a.api.store(key="named", value=b"v")
        stored = [p for t, p in seen if t == "record.stored" and p.get("origin") == "local"]
        assert stored
        assert stored[0]["key"] == "named"
        assert any(t == "lookup.done" for t, _ in seen)
        stats = await a.api.stats()
        assert stats["id"] == a.runtime.node_id.hex()
        assert stats["connections"] == 1
    finally:
        await stop_nodes(nodes)


async def test_connection_cap_closes_peers_the_routing_table_does_not_hold(
    signaling: str,
) -> None:
    # k = 1: most peers end up in replacement caches, not in the table, so the cap may close them.
    nodes = await start_nodes(signaling, 6, Config(k=1), max_connections=1, bootstrap_peers=5)
    try:
        hub_node = nodes[0].runtime
        for other in nodes[1:]:
            await hub_node.dial(other.runtime.node_id)
        table = hub_node.core.table

        def open_peers() -> list[bytes]:
            return [p.id for p in hub_node.connections.peers()]

        await wait_until(lambda: all(p in table for p in open_peers()))
        # Everything still open is needed by the routing table; the rest was closed.
        assert hub_node.connections.stats.connections_evicted >= 1
        assert all(p in table for p in open_peers())
    finally:
        await stop_nodes(nodes)


@pytest.mark.parametrize("slow_lower", [False, True], ids=["offers-cross", "lower-still-gathering"])
async def test_glare_two_nodes_dialing_each_other_end_with_one_link(
    signaling: str, slow_lower: bool
) -> None:
    # No bootstrap dialing: the two dials below are the only ones.
    nodes = await start_nodes(signaling, 2, auto_bootstrap=False)
    a, b = sorted((n.runtime for n in nodes), key=lambda n: n.node_id)
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
        sa, sb = a.connections.stats, b.connections.stats
        assert sa.dials_started == sb.dials_started == 1  # both really dialed
        # One connection, not two: the higher ID dropped its offer and answered the lower's.
        await asyncio.sleep(0.3)  # a second connection, if any, would have opened by now
        assert sa.links_opened == sb.links_opened == 1
        (pa,) = a.connections.peers()
        (pb,) = b.connections.peers()
        assert (pa.id, pb.id) == (b.node_id, a.node_id)
        # Both sides kept the same connection (the lower ID's offer won).
        assert pa.cid == pb.cid
        pong = await a.ping(b.node_id)
        assert pong.rtt_s >= 0
    finally:
        await stop_nodes(nodes)


async def test_a_superseded_dial_that_never_opens_fails_cleanly(signaling: str) -> None:
    # Every connection attempt is lost: the glare loser's dial waits for the peer's connection,
    # which never opens. dial() must answer False at its deadline — not raise CancelledError
    # (which used to kill the bootstrap loop silently).
    nodes = await start_nodes(
        signaling, 2, hub=MemoryHub(dial_loss=1.0), auto_bootstrap=False, dial_timeout_s=0.5
    )
    a, b = (n.runtime for n in nodes)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(a.dial(b.node_id), b.dial(a.node_id), return_exceptions=True), 10
        )
        assert results == [False, False]
        assert a.connections.dials_in_progress == 0
        assert b.connections.dials_in_progress == 0
    finally:
        await stop_nodes(nodes)


async def test_bootstrap_round_connects_a_lonely_node_and_joins(signaling: str) -> None:
    nodes = await start_nodes(signaling, 3, auto_bootstrap=False)
    lonely = nodes[0].runtime
    try:
        assert lonely.bootstrap is not None
        assert len(lonely.connections) == 0
        assert await lonely.bootstrap.round()
        assert len(lonely.connections) >= 1
        await wait_until(lambda: len(lonely.core.table) >= 2)
        assert not await lonely.bootstrap.round()  # not alone any more: nothing to do
        assert lonely.bootstrap.rounds == 1
    finally:
        await stop_nodes(nodes)


async def test_two_islands_on_one_signaling_server_merge_through_the_island_check(
    signaling: str,
) -> None:
    # Two networks that never heard of each other, registered with the same server: {0, 1} and
    # {2, 3}. A lookup cannot cross between them, so a value stored in one is not found in the
    # other — until a node's island check meets a registered stranger and joins through it.
    nodes = await start_nodes(signaling, 4, auto_bootstrap=False, bootstrap_peers=2)
    rts = [n.runtime for n in nodes]
    try:
        assert await rts[0].dial(rts[1].node_id)
        assert await rts[2].dial(rts[3].node_id)
        await wait_until(lambda: all(len(r.core.table) == 1 for r in rts))
        assert (await nodes[1].api.store(key="isle", value=b"v"))["acks"] >= 1
        with pytest.raises(CommandError) as err:
            await nodes[3].api.get(key="isle")
        assert err.value.code is ErrorCode.NOT_FOUND

        heal = rts[0].bootstrap
        assert heal is not None
        assert await heal.heal()  # nodes 2 and 3 are registered but unknown: join through them
        assert heal.merges == 1
        assert {rts[2].node_id, rts[3].node_id} <= {c.id for c in rts[0].core.table.contacts()}
        assert not await heal.heal()  # nothing unknown left: a settled node only asks the server
        assert heal.merges == 1

        stored = await nodes[1].api.store(key="merged", value=b"w")
        assert stored["acks"] >= stored["quorum"] >= 1
        for node in nodes:
            assert (await node.api.get(key="merged"))["value"] == b"w"
    finally:
        await stop_nodes(nodes)
