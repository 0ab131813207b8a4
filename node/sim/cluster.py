"""Many ``DhtProtocol`` instances wired through the simulated network on virtual time.

Each node has at most one armed timer (its ``get_timer()``); after every input the cluster
pumps the node: queued messages become deliveries, events are collected, the timer is re-armed.
With ``wire=True`` every message goes through the real codec (encode, then decode at the
receiver), as over a data channel; without it message objects are passed as they are, which is
what lets 10,000 nodes run in seconds.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from node import codec
from node.config import Config
from node.events import Event, OpCompleted, OpResult
from node.identity import Identity
from node.ids import NodeId
from node.maintenance import REFRESH_CHECK_S
from node.messages import Message, MsgType
from node.protocol import DhtProtocol
from node.sim.models import LatencyModel
from node.sim.network import NetworkModel
from node.sim.scheduler import Scheduler, no_gc

SIM_WALL_EPOCH_S = 1_700_000_000.0


def sim_config(**overrides: object) -> Config:
    """Defaults for simulations: no link-level liveness (there are no links)."""
    base: dict[str, object] = {"liveness_tick_s": 3600.0}
    base.update(overrides)
    return Config(**base)  # type: ignore[arg-type]


@dataclass(slots=True, eq=False)
class SimNode:
    proto: DhtProtocol
    alive: bool = True
    timer_at: float | None = None
    results: dict[int, OpResult] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    born: float = 0.0

    @property
    def id(self) -> NodeId:
        return self.proto.id


class SimCluster:
    def __init__(
        self,
        seed: int = 0,
        config: Config | None = None,
        latency_s: tuple[float, float] = (0.005, 0.050),
        loss: float = 0.0,
        wire: bool = False,
        keep_events: bool = True,
        latency: LatencyModel | None = None,
        nat_share: float = 0.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config or sim_config()
        self.sched = Scheduler()
        self.net = NetworkModel(
            random.Random(seed ^ 0x5EED), latency_s[0], latency_s[1], loss, latency
        )
        self.wire = wire
        self.keep_events = keep_events
        self.nat_share = nat_share
        self.nodes: dict[NodeId, SimNode] = {}
        self.order: list[NodeId] = []
        self._sent: Counter[MsgType] = Counter()
        self._nat_rng = random.Random(seed ^ 0x4A7)

    @property
    def messages_sent(self) -> Counter[str]:
        """Messages handed to the network, by type name (lost ones included)."""
        return Counter({t.name: n for t, n in self._sent.items()})

    # -- membership ----------------------------------------------------------------------------

    def new_node(self) -> SimNode:
        """A node with a fresh identity, registered but not joined (no contacts)."""
        identity = Identity.generate(self.rng)
        proto = DhtProtocol(
            identity,
            self.config,
            random.Random(self.rng.getrandbits(64)),
            self.sched.now,
            SIM_WALL_EPOCH_S,
        )
        node = SimNode(proto, born=self.sched.now)
        self.nodes[proto.id] = node
        self.order.append(proto.id)
        if self.nat_share and self._nat_rng.random() < self.nat_share:
            self.net.set_natted(proto.id)
        return node

    def add_node(self, bootstrap: NodeId | None = None, join: bool = True) -> SimNode:
        node = self.new_node()
        proto = node.proto
        if bootstrap is not None:
            proto.add_contact(bootstrap, self.sched.now)
        if join and bootstrap is not None:
            proto.join(self.sched.now)
        self._pump(node)
        return node

    def bootstrap(self, n: int, batch: int = 50, settle_s: float = 5.0) -> float:
        """Grow the network to ``n`` nodes with the real join protocol, ``batch`` joining at once
        through random members. Returns the virtual time it took."""
        start = self.sched.now
        with no_gc():
            if not self.nodes:
                self.add_node()
            while len(self.nodes) < n:
                members = [i for i in self.order if self.nodes[i].alive]
                for _ in range(min(batch, n - len(self.nodes))):
                    self.add_node(self.rng.choice(members))
                self.run_for(0.5)
            self.run_for(settle_s)
        return self.sched.now - start

    def settle(self) -> float:
        """Run until every live node has been through one round of periodic bucket refresh
        (``refresh_interval_s`` after its last lookup into a bucket, every bucket up to its
        deepest is refreshed): the state of a network that has been up for a while, not the
        one right after the join. Returns the virtual time it took."""
        start = self.sched.now
        interval = self.config.refresh_interval_s
        self.run_for(interval + 2 * REFRESH_CHECK_S)
        while any(n.proto.maintenance.queued_refreshes for n in self.alive()):
            if self.sched.now - start >= 2 * interval:
                break  # (the next round is due: a network that keeps changing never idles)
            self.run_for(REFRESH_CHECK_S)
        self.run_for(self.config.lookup_deadline_s)  # the last refresh lookups finish
        return self.sched.now - start

    def alive(self) -> list[SimNode]:
        return [node for i in self.order if (node := self.nodes[i]).alive]

    def kill(self, node_id: NodeId) -> None:
        """The node stops answering (its state stays for inspection)."""
        self.nodes[node_id].alive = False

    # -- driving -------------------------------------------------------------------------------

    def _pump(self, node: SimNode) -> None:
        proto = node.proto
        now = self.sched.now
        out = proto.messages_to_send()
        if out:
            sent, delay, push, deliver = self._sent, self.net.delay, self.sched.push, self._deliver
            src = proto.id
            nodes = self.nodes
            for o in out:
                msg = o.message
                sent[msg.type] += 1
                dst = nodes.get(o.peer)
                d = delay(src, o.peer)
                if d is None or dst is None:
                    continue
                push(now + d, deliver, (dst, src, codec.encode(msg) if self.wire else msg))
        if proto._events:
            while (ev := proto.next_event()) is not None:
                if isinstance(ev, OpCompleted):
                    node.results[ev.op_id] = ev.result
                elif self.keep_events:
                    node.events.append(ev)
        t = proto.get_timer()
        if t is not None and (node.timer_at is None or t < node.timer_at):
            node.timer_at = t
            self.sched.push(t, self._fire, (node, t))

    def _deliver(self, item: tuple[SimNode, NodeId, Message | bytes]) -> None:
        node, src, payload = item
        if node.alive:
            node.proto.receive(src, payload, self.sched.now)
            self._pump(node)

    def _fire(self, item: tuple[SimNode, float]) -> None:
        node, at = item
        if node.timer_at != at:
            return  # superseded by an earlier timer
        node.timer_at = None
        if not node.alive:
            return
        node.proto.handle_timer(self.sched.now)
        self._pump(node)

    def run_for(self, seconds: float) -> None:
        self.sched.run_until(self.sched.now + seconds)

    def start(self, node: SimNode, op: Callable[[DhtProtocol, float], int]) -> int:
        op_id = op(node.proto, self.sched.now)
        self._pump(node)
        return op_id

    def wait(self, node: SimNode, op_id: int, limit_s: float = 60.0) -> OpResult:
        self.sched.run_while(lambda: op_id not in node.results, self.sched.now + limit_s)
        if op_id not in node.results:
            raise TimeoutError(f"operation {op_id} did not complete in {limit_s} virtual seconds")
        return node.results.pop(op_id)

    def run_op(self, node: SimNode, op: Callable[[DhtProtocol, float], int]) -> OpResult:
        return self.wait(node, self.start(node, op))
