"""Real node processes over WebRTC on 127.0.0.1, bootstrapped by a real signaling server."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgpack
import pytest

from node.ids import parse_id
from tests.support.peers import webrtc_peer
from tests.support.procs import proc_cluster, wait_for

pytestmark = pytest.mark.slow


def _connected(node: object) -> set[str]:
    return {p["id"] for p in node.call("peers")["peers"]}  # type: ignore[attr-defined]


def test_eight_nodes_store_get_and_survive_signaling_outage(tmp_path: Path) -> None:
    with proc_cluster(tmp_path, 8, "--bootstrap-peers", "2", "--log-level", "DEBUG") as c:
        c.wait_formed(min_rt=3, timeout_s=60)
        first = c.nodes[0]
        r = first.call("store", key="greeting", value=b"hello")
        assert r["acks"] >= r["quorum"] >= 1
        for n in c.nodes:
            assert n.call("get", key="greeting")["value"] == b"hello"

        # The signaling server goes away: the DHT keeps working on its own.
        c.signaling.stop()
        wait_for(
            lambda: not any(n.call("stats")["signaling_connected"] for n in c.nodes),
            15,
            "nodes to notice the signaling server is gone",
        )
        ids = [n.node_id for n in c.nodes]
        a, b = c.nodes[1], c.nodes[6]
        a.call("disconnect", node_id=b.node_id)
        wait_for(
            lambda: b.node_id not in _connected(a) and a.node_id not in _connected(b),
            10,
            "the pair to be disconnected",
        )
        result = a.call("connect", node_id=b.node_id)
        assert result["connected"] is True
        assert b.node_id in _connected(a)
        assert a.node_id in _connected(b)

        a.call("store", key="during-outage", value=b"still works")
        for n in c.nodes:
            assert n.call("get", key="during-outage")["value"] == b"still works"
            assert n.call("find", node_id=ids[(ids.index(n.node_id) + 3) % 8])["closest"]

        # It comes back: every node re-registers by itself.
        c.signaling.start()
        wait_for(
            lambda: all(n.call("stats")["signaling_connected"] for n in c.nodes),
            20,
            "nodes to re-register with the restarted signaling server",
        )


def test_sigkilled_node_is_evicted_within_15_s(tmp_path: Path) -> None:
    with proc_cluster(tmp_path, 6) as c:
        c.wait_formed(min_rt=5, timeout_s=60)
        c.nodes[0].call("store", key="k", value=b"v")
        victim = c.nodes[2]
        survivors = [n for n in c.nodes if n is not victim]
        assert all(victim.node_id in _connected(n) for n in survivors)
        victim.kill()
        killed_at = time.monotonic()

        def evicted() -> bool:
            for n in survivors:
                if victim.node_id in _connected(n):
                    return False
                contacts = {ct["id"] for b in n.call("dump")["buckets"] for ct in b["contacts"]}
                if victim.node_id in contacts:
                    return False
            return True

        wait_for(evicted, 15, "every survivor to evict the killed node", step_s=0.2)
        elapsed = time.monotonic() - killed_at
        assert elapsed <= 15
        for n in survivors:
            assert n.call("get", key="k")["value"] == b"v"


async def test_malformed_frames_never_crash_the_receiver(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    with proc_cluster(tmp_path, 2) as c:
        await loop.run_in_executor(None, lambda: c.wait_formed(min_rt=1, timeout_s=60))
        victim = c.nodes[0]
        victim_id = parse_id(victim.node_id)
        async with webrtc_peer(c.signaling.url) as attacker:
            assert await attacker.runtime.dial(victim_id)
            link = attacker.runtime.connections.link(victim_id)
            assert link is not None
            garbage = [
                os.urandom(1),
                os.urandom(200),
                msgpack.packb([3, 1]),  # FIND_NODE missing its target
                msgpack.packb([3, 1, b"short"]),  # wrong length id
                msgpack.packb([7, 1, "not a record", True]),  # wrong types
                msgpack.packb([99, 1, 2]),  # unknown type
                msgpack.packb({"a": 1}),  # a map, not an array
                msgpack.packb([1, -5]),  # negative request id
                msgpack.packb([4, 1, [os.urandom(32)] * 65]),  # too many nodes
                msgpack.packb([5, 1, os.urandom(32)])[:-5],  # truncated
                b"\x92" + b"\xff" * 100,
            ]
            for g in garbage:
                link.send(g)
            link.send(b"\x00" * (59 * 1024))  # large junk within the wire limit

            def dropped() -> int:
                return int(victim.call("stats")["dropped_malformed"])

            await loop.run_in_executor(
                None, lambda: wait_for(lambda: dropped() >= len(garbage), 10, "drops counted")
            )
            assert victim.alive()
            # The receiver still serves the same peer and everyone else.
            r = await attacker.api.ping(node_id=victim.node_id)
            assert r["rtt_ms"] >= 0
            other = c.nodes[1]
            await loop.run_in_executor(None, lambda: other.call("store", key="x", value=b"y"))
            got = await loop.run_in_executor(None, lambda: victim.call("get", key="x"))
            assert got["value"] == b"y"
