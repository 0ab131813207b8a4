"""Floods from one rogue peer (real WebRTC, its own key) against one node process (issue 13).

The node runs with small quotas and a low per-peer request rate (``LIMITS``) so that a flood
this machine can produce exceeds them. Per phase (large STOREs, small STOREs, FIND requests):
the node stays up, the rogue is refused (``quota`` once its stores fill its quota,
``rate_limited`` beyond its request rate; on a loaded machine 32 KiB STOREs arrive too slowly
to exceed the rate, so each phase must see some refusal and the whole run both kinds),
the node's record store stays under its byte quota and its RSS under the quota plus
``RSS_MARGIN_KIB`` (aiortc/SCTP buffers, the interpreter's arenas), and every honest get keeps
succeeding; small requests far over the rate get the rogue banned (disconnected, its offers
refused for ``ban_s``, doubling), after which the test lets it back in for the next phase. The
slow variant floods 30 s per phase and also holds honest get latency to 2x its p50 before the
flood.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.cluster import rss_kib
from bench.flood import flood_phases, node_args, refusal_counts
from tests.support.procs import proc_cluster

LIMITS = {
    "max_store_bytes": 8 * 1024 * 1024,
    # Small enough that the few 32 KiB STOREs a starved machine delivers in 4 s still fill it.
    "max_publisher_bytes": 192 * 1024,
    "max_peer_bytes": 192 * 1024,
    "request_rate_per_peer": 40,
    "request_burst_per_peer": 80,
    "ban_s": 4,
}
RSS_MARGIN_KIB = 48 * 1024


async def _flood_phases(tmp_path: Path, seconds: float, check_latency: bool) -> None:
    loop = asyncio.get_running_loop()
    with proc_cluster(tmp_path, 3, *node_args(LIMITS)) as c:
        await loop.run_in_executor(None, lambda: c.wait_formed(min_rt=2, timeout_s=90))
        victim, writer = c.nodes[0], c.nodes[1]
        assert victim.proc is not None
        rss_start = rss_kib(victim.proc.pid)
        async for ph in flood_phases(c, LIMITS, seconds, warmup_s=3.0):
            s0, s1, stats = ph.counts_before, refusal_counts(ph.stats), ph.stats
            assert ph.alive, ph.name
            assert ph.sent > LIMITS["request_burst_per_peer"], (ph.name, ph.sent)
            refused = ("rate_limited", "rate_dropped", "quota")
            assert sum(s1[r] - s0[r] for r in refused) > 0, (ph.name, s0, s1)
            assert stats["store_bytes"] <= LIMITS["max_store_bytes"]
            assert ph.rss_kib - rss_start <= LIMITS["max_store_bytes"] // 1024 + RSS_MARGIN_KIB
            assert ph.honest_errors == 0, ph.name
            assert ph.honest_during, ph.name
            if check_latency:
                p50_before = sorted(ph.honest_before)[len(ph.honest_before) // 2]
                p50_during = sorted(ph.honest_during)[len(ph.honest_during) // 2]
                assert p50_during <= 2 * p50_before, (ph.name, p50_before, p50_during)
        # Both refusals happened: big stores ran into the quota, small requests into the rate.
        assert s1["quota"] > 0, s1
        assert s1["rate_limited"] > 0, s1
        # Small requests far over the rate cost the transport even when dropped: the rogue was
        # disconnected and refused for ``ban_s`` (then let back in for the next phase).
        assert stats["peers_banned"] >= 1, stats
        # The rogue's flood is over: honest writes and reads still work.
        await loop.run_in_executor(None, lambda: writer.call("store", key="after", value=b"ok"))
        got = await loop.run_in_executor(None, lambda: victim.call("get", key="after"))
        assert got["value"] == b"ok"


async def test_a_short_flood_is_refused_and_honest_gets_keep_working(tmp_path: Path) -> None:
    await _flood_phases(tmp_path, 4.0, check_latency=False)


@pytest.mark.slow
async def test_thirty_second_floods_keep_honest_latency(tmp_path: Path) -> None:
    await _flood_phases(tmp_path, 30.0, check_latency=True)
