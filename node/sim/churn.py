"""Churn over virtual hours: node lifetimes, joins during the run, and what they do to the DHT.

``ChurnRun`` gives every churning node a session length drawn from a ``Lifetime`` and kills it
when the session ends; new nodes arrive as a Poisson process at the rate that keeps the network
size steady (alive / mean lifetime) and join with the real protocol through a random live member.
Publishers (the nodes that wrote the keys) are exempt: a key whose originator is gone expires
after its TTL by design (DESIGN §4), so readability under churn is a question about the holders.

Every ``sample_every_s`` it measures, from the outside:

- ``t_s``: seconds since the churn phase started;
- ``readable``: the share of the keys a get from a random live node returns intact;
- lookup hops, messages and latency of those gets;
- routing-table health: over a sample of live nodes, the share of table contacts that are alive,
  and the mean table size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from node.events import GetResult
from node.ids import NodeId
from node.records import Record
from node.sim.cluster import SimCluster, SimNode
from node.sim.models import Lifetime
from node.sim.scheduler import no_gc

HEALTH_SAMPLE = 100  # nodes whose tables are inspected per sample


@dataclass(slots=True)
class Sample:
    t_s: float
    alive: int
    readable: float
    table_alive: float
    table_size: float
    deaths: int
    joins: int


@dataclass(slots=True)
class GetStats:
    hops: list[float] = field(default_factory=list)
    messages: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    found: int = 0
    count: int = 0

    def add(self, res: GetResult, ok: bool) -> None:
        self.count += 1
        self.found += ok
        self.hops.append(res.hops)
        self.messages.append(2 * res.contacted - res.failed)
        self.latency_s.append(res.duration_s)


class ChurnRun:
    def __init__(
        self,
        cluster: SimCluster,
        lifetime: Lifetime,
        mean_lifetime_s: float,
        records: dict[NodeId, Record],
        exempt: set[NodeId],
    ) -> None:
        self.c = cluster
        self.lifetime = lifetime
        self.mean_lifetime_s = mean_lifetime_s
        self.records = records
        self.exempt = exempt
        self.samples: list[Sample] = []
        self.gets = GetStats()
        self.deaths = 0
        self.joins = 0
        self.start_s = cluster.sched.now  # sample times count from here
        self._alive: list[SimNode] = cluster.alive()
        for node in self._alive:
            self._schedule_death(node)
        self._schedule_join()

    # -- the processes -------------------------------------------------------------------------

    def _schedule_death(self, node: SimNode) -> None:
        if node.id not in self.exempt:
            self.c.sched.call_later(self.lifetime.draw(self.c.rng), lambda: self._die(node))

    def _die(self, node: SimNode) -> None:
        if node.alive:
            self.c.kill(node.id)
            self.c.net.forget(node.id)
            self.deaths += 1

    def _schedule_join(self) -> None:
        rate = max(1, len(self._alive)) / self.mean_lifetime_s  # arrivals per second
        self.c.sched.call_later(self.c.rng.expovariate(rate), self._join)

    def _join(self) -> None:
        self._alive = [n for n in self._alive if n.alive]
        if self._alive:
            node = self.c.add_node(self.c.rng.choice(self._alive).id)
            self._alive.append(node)
            self._schedule_death(node)
            self.joins += 1
        self._schedule_join()

    # -- measuring -----------------------------------------------------------------------------

    def run(self, duration_s: float, sample_every_s: float) -> list[Sample]:
        """Sample now and every ``sample_every_s`` (on a fixed grid) until ``duration_s``
        (the cyclic GC off throughout, as in every simulator run: ``no_gc``)."""
        with no_gc():
            self.sample()
            for i in range(1, math.ceil(duration_s / sample_every_s - 1e-9) + 1):
                at = self.start_s + min(i * sample_every_s, duration_s)
                self.c.sched.run_until(at)
                self.sample()
        return self.samples

    def sample(self) -> Sample:
        c = self.c
        t_s = c.sched.now - self.start_s  # the reads below advance the clock a little
        alive = [n for n in self._alive if n.alive]
        self._alive = alive
        ok = 0
        for key, rec in self.records.items():
            reader = c.rng.choice(alive)
            res = c.run_op(reader, lambda p, now, key=key: p.get(key, now))  # type: ignore[misc]
            assert isinstance(res, GetResult)
            good = res.record is not None and res.record.sig == rec.sig
            ok += good
            self.gets.add(res, good)
        inspected = c.rng.sample(alive, min(HEALTH_SAMPLE, len(alive)))
        live = total = 0
        for n in inspected:
            for contact in n.proto.table.contacts():
                total += 1
                peer = c.nodes.get(contact.id)
                live += peer is not None and peer.alive
        s = Sample(
            t_s=round(t_s, 3),
            alive=len(alive),
            readable=ok / len(self.records) if self.records else 1.0,
            table_alive=live / total if total else 0.0,
            table_size=total / len(inspected) if inspected else 0.0,
            deaths=self.deaths,
            joins=self.joins,
        )
        self.samples.append(s)
        return s

    def report(self) -> dict[str, Any]:
        return {
            "samples": [
                {
                    "t_s": s.t_s,
                    "alive": s.alive,
                    "readable": round(s.readable, 4),
                    "table_alive": round(s.table_alive, 4),
                    "table_size": round(s.table_size, 1),
                    "deaths": s.deaths,
                    "joins": s.joins,
                }
                for s in self.samples
            ],
            "deaths": self.deaths,
            "joins": self.joins,
            "min_readable": min((s.readable for s in self.samples), default=1.0),
        }
