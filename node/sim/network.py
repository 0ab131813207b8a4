"""The simulated network: latency, loss, partitions and NAT-like unreachability (one seeded RNG).

Latency is a ``LatencyModel`` (``node.sim.models``): constant, uniform per message, or the
long-tailed "measured" model where every node has an access delay and a pair's one-way delay is
the sum of both ends' (so a slow node is slow to everyone, as on the internet).

NAT: a node in ``natted`` accepts a message only from a peer it has sent to before (the pinhole
its own outgoing traffic opened; pinholes never close in this model). Its own requests and the
answers to them get through; unsolicited requests from strangers are lost, so other nodes time
out on it and drop it from their tables, as with a real full-cone-less (symmetric) NAT.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from node.ids import NodeId
from node.sim.models import LatencyModel, UniformLatency


@dataclass(slots=True)
class NetworkModel:
    rng: random.Random
    latency_min_s: float = 0.005
    latency_max_s: float = 0.050
    loss: float = 0.0
    latency: LatencyModel | None = None  # None: uniform in [latency_min_s, latency_max_s]
    groups: dict[NodeId, int] = field(default_factory=dict)  # partition: node → group
    natted: set[NodeId] = field(default_factory=set)
    pinholes: dict[NodeId, set[NodeId]] = field(default_factory=dict)  # natted → peers it sent to
    delivered: int = 0
    dropped: int = 0
    nat_dropped: int = 0

    def __post_init__(self) -> None:
        if self.latency is None:
            self.latency = UniformLatency(self.latency_min_s, self.latency_max_s)

    def partition(self, groups: list[set[NodeId]]) -> None:
        """Split the network: nodes in different groups cannot talk. Unlisted nodes: group 0."""
        self.groups = {n: i + 1 for i, g in enumerate(groups) for n in g}

    def heal(self) -> None:
        self.groups = {}

    def set_natted(self, node: NodeId) -> None:
        self.natted.add(node)
        self.pinholes[node] = set()

    def forget(self, node: NodeId) -> None:
        """``node`` left for good: drop its per-node state."""
        self.natted.discard(node)
        self.pinholes.pop(node, None)
        assert self.latency is not None
        self.latency.forget(node)

    def delay(self, src: NodeId, dst: NodeId) -> float | None:
        """Delivery delay for one message, or None when it is lost."""
        if self.natted:
            holes = self.pinholes.get(src)
            if holes is not None:
                holes.add(dst)
            holes = self.pinholes.get(dst)
            if holes is not None and src not in holes:
                self.nat_dropped += 1
                self.dropped += 1
                return None
        if self.groups and self.groups.get(src, 0) != self.groups.get(dst, 0):
            self.dropped += 1
            return None
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return None
        self.delivered += 1
        assert self.latency is not None
        return self.latency.delay(src, dst, self.rng)
