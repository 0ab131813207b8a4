"""The simulated network: latency, loss and partitions, all drawn from one seeded RNG."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from node.ids import NodeId


@dataclass(slots=True)
class NetworkModel:
    rng: random.Random
    latency_min_s: float = 0.005
    latency_max_s: float = 0.050
    loss: float = 0.0
    groups: dict[NodeId, int] = field(default_factory=dict)  # partition: node → group
    delivered: int = 0
    dropped: int = 0

    def partition(self, groups: list[set[NodeId]]) -> None:
        """Split the network: nodes in different groups cannot talk. Unlisted nodes: group 0."""
        self.groups = {n: i + 1 for i, g in enumerate(groups) for n in g}

    def heal(self) -> None:
        self.groups = {}

    def delay(self, src: NodeId, dst: NodeId) -> float | None:
        """Delivery delay for one message, or None when it is lost."""
        if self.groups and self.groups.get(src, 0) != self.groups.get(dst, 0):
            self.dropped += 1
            return None
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return None
        self.delivered += 1
        return self.rng.uniform(self.latency_min_s, self.latency_max_s)
