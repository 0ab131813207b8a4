"""Topic discovery with real node processes: the second seed's scenario, and bad input."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator

import pytest

from control.errors import RemoteError
from node.identity import Identity
from node.ids import key_id, parse_id
from node.messages import Announce, AnnounceAck
from node.records import sign_provider
from tests.support.peers import webrtc_peer
from tests.support.procs import ProcCluster, proc_cluster

pytestmark = pytest.mark.slow


def test_seed_scenario_exact_sets_and_no_duplicates() -> None:
    from examples.topic_discovery import CLIENTS, LATE_SERVER, SERVERS, run
    from supervisor.cluster import Cluster

    with Cluster.up(peers=8, backend="process", node_args=["--discovery-interval", "1"]) as c:
        events = run(c, timeout_s=30)
        servers = {c.node(i).id(): port for i, port in SERVERS.items()}
        servers[c.node(LATE_SERVER[0]).id()] = LATE_SERVER[1]
        for client in CLIENTS:
            found = events[client]
            peers = [e["peer"] for e in found]
            counts = collections.Counter(peers)
            assert not [p for p, n in counts.items() if n > 1], f"duplicates: {counts}"
            assert set(peers) == set(servers), f"client {client} found {peers}"
            assert all(e["port"] == servers[e["peer"]] for e in found)
            assert all(e["topic"] == "my-app-v1" for e in found)
        # A passive client is never announced; every lookup returns exactly the servers.
        looked_up = {p["id"]: p["port"] for p in c.node(CLIENTS[0]).lookup("my-app-v1")}
        assert looked_up == servers
        # Leaving is seen by the clients as topic.peer_lost.
        first = next(iter(SERVERS))
        c.node(first).unannounce("my-app-v1")
        _, lost = c.event_log.wait_for(
            lambda t, p: t == "topic.peer_lost" and p.get("index") == CLIENTS[0],
            0,
            30,
        )
        assert [e["peer"] for e in lost] == [c.node(first).id()]
        assert lost[0]["reason"] == "left"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    with proc_cluster(tmp_path_factory.mktemp("topics"), 2) as c:
        c.wait_formed(min_rt=1, timeout_s=60)
        yield c


def test_oversize_metadata_and_huge_topic_are_refused(pair: ProcCluster) -> None:
    node = pair.nodes[0]
    with pytest.raises(RemoteError) as big_meta:
        node.call("announce", topic="t", port=80, meta={"blob": "x" * 2000})
    assert big_meta.value.code == "too_large"
    assert "1024" in str(big_meta.value)
    with pytest.raises(RemoteError) as huge_topic:
        node.call("announce", topic="t" * 10_000, port=80)
    assert huge_topic.value.code == "bad_args"
    assert node.call("topics")["topics"] == []
    assert node.call("stats")["providers_held"] == 0
    assert all(n.call("lookup", topic="t")["peers"] == [] for n in pair.nodes)


async def test_forged_announcer_is_rejected_and_nothing_stored(pair: ProcCluster) -> None:
    loop = asyncio.get_running_loop()
    victim = pair.nodes[1]
    async with webrtc_peer(pair.signaling.url) as node:
        attacker = node.runtime
        victim_id = parse_id(victim.node_id)
        assert await attacker.dial(victim_id)
        honest = Identity.generate()
        topic = key_id("forged-topic")
        real = sign_provider(honest, topic, 1, 80, b"")
        # The attacker claims the honest node's key but signs with its own.
        forged = sign_provider(attacker.identity, topic, real.ts, 81, b"")
        forged = type(forged)(
            forged.topic, forged.ts, forged.port, forged.leave, forged.meta,
            honest.public_key, forged.sig,
        )  # fmt: skip
        acks: list[AnnounceAck] = []
        got_ack = asyncio.Event()
        assert attacker.proto is not None
        original = attacker.proto.receive

        def spy(peer: bytes, data: object, now: float) -> None:
            from node import codec

            if isinstance(data, bytes):
                try:
                    msg = codec.decode(data)
                except codec.DecodeError:
                    msg = None
                if isinstance(msg, AnnounceAck):
                    acks.append(msg)
                    got_ack.set()
            original(peer, data, now)  # type: ignore[arg-type]

        attacker.proto.receive = spy  # type: ignore[method-assign]
        from node import codec

        link = attacker.connections.link(victim_id)
        assert link is not None
        link.send(codec.encode(Announce(4242, forged)))
        await asyncio.wait_for(got_ack.wait(), 10)
        assert acks[0].ok is False
        assert acks[0].reason == "bad signature"
        stats = await loop.run_in_executor(None, lambda: victim.call("stats"))
        assert stats["providers_held"] == 0
        assert stats["records_rejected"] >= 1
        found = await loop.run_in_executor(
            None, lambda: victim.call("lookup", topic="forged-topic")
        )
        assert found["peers"] == []
