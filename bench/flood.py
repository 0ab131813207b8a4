"""Flood benchmark: one rogue peer (real WebRTC, real handshake, its own key) floods one node
process with large STOREs, small STOREs and FIND requests, phase by phase, while an honest
client keeps reading keys through that node. Prints one JSON document: per phase the requests/s
the node refused (``rate_limited``/dropped/``quota``) and served, and the honest get latency
p50/p99 before and during the phase, and the node's RSS.

    python bench/flood.py --seconds 30 --nodes 3

The flood driver (``flood``) and the honest prober (``Prober``) are also used by
tests/integration/test_flood.py.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import percentiles, rss_kib
from node import codec, tunables
from node.ids import NodeId, key_id, parse_id
from node.messages import FindNode, FindValue, Store
from node.records import sign_record
from node.transport.base import LinkBusy, LinkClosed
from peer.node import PeerNode

PHASES = ("large_store", "small_store", "find")
LARGE_VALUE_BYTES = 32 * 1024 - 64
REQUEST_TYPES = ("PING", "FIND_NODE", "FIND_VALUE", "STORE", "HAS_VALUE", "ANNOUNCE", "GET_PEERS")
# The quotas and rate limits the flooded node runs with (dht-node --set ...).
FLOOD_LIMITS = {
    "max_store_bytes": 24 * 1024 * 1024,
    "max_publisher_bytes": 8 * 1024 * 1024,
    "max_peer_bytes": 8 * 1024 * 1024,
    "request_rate_per_peer": 200,
    "request_burst_per_peer": 400,
    "ban_s": 10,  # a banned attacker is let back in for the next phase after this
}


def node_args(limits: dict[str, int] | None = None) -> tuple[str, ...]:
    return tunables.node_args(limits or FLOOD_LIMITS)


async def flood(attacker: PeerNode, victim: NodeId, phase: str, seconds: float) -> int:
    """Send ``phase`` requests to ``victim`` as fast as the link takes them; the count sent."""
    link = attacker.runtime.connections.link(victim)
    assert link is not None, "dial the victim first"
    ident = attacker.identity
    wall_ms = int(time.time() * 1000)
    big = os.urandom(LARGE_VALUE_BYTES)
    sent = 0
    deadline = time.monotonic() + seconds
    for i in itertools.count():
        if time.monotonic() >= deadline:
            break
        if phase == "large_store":
            rec = sign_record(ident, key_id(f"flood-L{i}"), big, wall_ms)
            msg: Any = Store(i + 1, rec, False)
        elif phase == "small_store":
            rec = sign_record(ident, key_id(f"flood-S{i}"), b"x" * 16, wall_ms)
            msg = Store(i + 1, rec, False)
        elif i % 2:
            msg = FindValue(i + 1, key_id(f"probe-{i}"))
        else:
            msg = FindNode(i + 1, NodeId(key_id(f"probe-{i}")))
        data = codec.encode(msg)
        while True:
            try:
                link.send(data)
                break
            except LinkBusy:
                await asyncio.sleep(0.002)
                if time.monotonic() >= deadline:
                    return sent
            except LinkClosed:
                # The victim banned us (or our own liveness pings went unanswered while it
                # dropped our excess unread): keep dialing until the phase ends, as a
                # persistent attacker would.
                relinked = await _redial(attacker, victim, deadline)
                if relinked is None:
                    return sent
                link = relinked
        sent += 1
        if sent % 64 == 0:
            await asyncio.sleep(0)  # let the transport drain
    return sent


async def _redial(attacker: PeerNode, victim: NodeId, deadline: float) -> Any:
    """The attacker's link to ``victim`` once a dial succeeds again; None at ``deadline``."""
    while time.monotonic() < deadline:
        if await attacker.runtime.dial(victim):
            link = attacker.runtime.connections.link(victim)
            if link is not None:
                return link
        await asyncio.sleep(0.5)
    return None


async def relink(attacker: PeerNode, victim: NodeId, ban_s: float) -> None:
    """Connect again before the next phase: a banned attacker is refused until its ban ends."""
    if attacker.runtime.connections.link(victim) is not None:
        return
    if await _redial(attacker, victim, time.monotonic() + ban_s + 30.0) is None:
        raise AssertionError(f"the victim still refuses the attacker {ban_s + 30:g} s later")


def _probe(endpoint: str, keys: list[str], stop: Any, out: Any) -> None:
    """The prober's own process: gets in a loop until ``stop`` is set, then (samples, errors)."""
    from control.client import ControlClient

    client = ControlClient(endpoint, timeout_s=10.0)
    samples: list[float] = []
    errors = 0
    try:
        for key in itertools.cycle(keys):
            if stop.is_set():
                break
            t0 = time.perf_counter()
            try:
                client.call("get", key=key)
                samples.append((time.perf_counter() - t0) * 1000)
            except Exception:  # a failed get counts as an error, not a latency
                errors += 1
            time.sleep(0.02)
    finally:
        client.close()
        out.send((samples, errors))


@dataclass
class Prober:
    """Honest reads of ``keys`` through the control socket at ``endpoint``, timed — in a process
    of their own: a thread beside the attacker would time the attacker's hold on the GIL (a FIND
    flood keeps this process busy), not the node."""

    endpoint: str
    keys: list[str]
    samples_ms: list[float] = field(default_factory=list)
    errors: int = 0
    _run: tuple[Any, Any, Any] | None = None

    def run_for(self, seconds: float) -> list[float]:
        self.start()
        time.sleep(seconds)
        return self.stop()

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        mine, theirs = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_probe, args=(self.endpoint, self.keys, stop, theirs), daemon=True
        )
        proc.start()
        self._run = (proc, stop, mine)

    def stop(self) -> list[float]:
        assert self._run is not None, "start() first"
        proc, stop, mine = self._run
        self._run = None
        stop.set()
        samples, errors = mine.recv() if mine.poll(60) else ([], 1)
        proc.join(10)
        self.samples_ms = samples
        self.errors += errors
        return samples


def refusal_counts(stats: dict[str, Any]) -> dict[str, int]:
    ins = stats.get("messages_in", {})
    return {
        "requests": sum(int(ins.get(t, 0)) for t in REQUEST_TYPES),
        "rate_limited": int(stats.get("rate_limited", 0)),
        "rate_dropped": int(stats.get("rate_dropped", 0)),
        "quota": int(stats.get("refused_quota", 0)),
        "banned": int(stats.get("peers_banned", 0)),
    }


def phase_report(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, Any]:
    d = {k: after[k] - before[k] for k in after}
    # Dropped requests are never decoded, so messages_in does not count them.
    d["requests"] += d["rate_dropped"]
    refused = d["rate_limited"] + d["rate_dropped"]
    served = d["requests"] - refused
    return {
        "requests_per_s": round(d["requests"] / seconds, 1),
        "refused_rate_per_s": round(refused / seconds, 1),
        "refused_quota_per_s": round(d["quota"] / seconds, 1),
        "served_per_s": round(served / seconds, 1),
        "served_ok_per_s": round((served - d["quota"]) / seconds, 1),
        **d,
    }


@dataclass
class Phase:
    """One flood phase as it happened: what the attacker sent, the victim's counters before and
    after, the honest get latencies (ms) before and during, and the victim's RSS after."""

    name: str
    sent: int
    seconds: float
    counts_before: dict[str, int]
    stats: dict[str, Any]
    honest_before: list[float]
    honest_during: list[float]
    honest_errors: int
    rss_kib: int
    alive: bool

    def report(self) -> dict[str, Any]:
        out = phase_report(self.counts_before, refusal_counts(self.stats), self.seconds)
        out.update(
            sent=self.sent,
            honest_before_ms=percentiles(self.honest_before),
            honest_during_ms=percentiles(self.honest_during),
            honest_errors=self.honest_errors,
            store_bytes=self.stats.get("store_bytes"),
            rss_kib=self.rss_kib,
            alive=self.alive,
        )
        return out


async def flood_phases(
    c: Any, limits: dict[str, int], seconds: float, warmup_s: float, keys: int = 5
) -> AsyncIterator[Phase]:
    """Against ``c.nodes[0]`` of a formed ``tests.support.procs`` cluster: honest keys stored
    through node 1 and read through the victim, then each phase of ``PHASES`` from one rogue
    peer (real WebRTC, its own key), let back in after a ban for the next phase."""
    from tests.support.peers import webrtc_peer

    loop = asyncio.get_running_loop()
    victim, writer = c.nodes[0], c.nodes[1]
    honest = [f"honest-{i}" for i in range(keys)]
    for k in honest:
        await loop.run_in_executor(None, lambda k=k: writer.call("store", key=k, value=b"v"))
    assert victim.proc is not None
    prober = Prober(victim.control, honest)
    async with webrtc_peer(c.signaling.url) as rogue:
        vid = parse_id(victim.node_id)
        assert await rogue.runtime.dial(vid)
        for name in PHASES:
            await relink(rogue, vid, limits["ban_s"])
            before = await loop.run_in_executor(None, prober.run_for, warmup_s)
            counts = refusal_counts(await loop.run_in_executor(None, victim.call, "stats"))
            prober.start()
            t0 = time.monotonic()
            sent = await flood(rogue, vid, name, seconds)
            took = time.monotonic() - t0
            during = await loop.run_in_executor(None, prober.stop)
            await asyncio.sleep(2.0)  # the node works off its backlog into its counters
            stats = await loop.run_in_executor(None, victim.call, "stats")
            rss = rss_kib(victim.proc.pid)
            yield Phase(name, sent, took, counts, stats, before, during, prober.errors, rss,
                        victim.alive())  # fmt: skip


async def run(nodes: int, seconds: float, gets_warmup_s: float) -> dict[str, Any]:
    from tests.support.procs import proc_cluster

    loop = asyncio.get_running_loop()
    out: dict[str, Any] = {"seconds": seconds, "limits": FLOOD_LIMITS, "phases": {}}
    with (
        tempfile.TemporaryDirectory(prefix="flood-") as tmp,
        proc_cluster(Path(tmp), nodes, *node_args()) as c,
    ):
        await loop.run_in_executor(None, lambda: c.wait_formed(min_rt=nodes - 1, timeout_s=240))
        assert c.nodes[0].proc is not None
        out["rss_start_kib"] = rss_kib(c.nodes[0].proc.pid)
        async for phase in flood_phases(c, FLOOD_LIMITS, seconds, gets_warmup_s, keys=10):
            out["phases"][phase.name] = phase.report()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0, help="flood length per phase")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of honest gets before")
    ns = ap.parse_args()
    print(json.dumps(asyncio.run(run(ns.nodes, ns.seconds, ns.warmup)), indent=2))


if __name__ == "__main__":
    main()
