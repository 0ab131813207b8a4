"""``DhtProtocol`` instances wired by hand in memory: time is stepped, every message is encoded.

``Net`` moves ``messages_to_send()`` between protocols through the real codec (as a data channel
would), delivers instantly, and fires timers in deadline order. Dead nodes drop everything
addressed to them.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from node import codec
from node.config import Config
from node.events import Event, OpResult
from node.identity import Identity
from node.ids import NodeId
from node.messages import Message
from node.protocol import DhtProtocol
from node.records import Record, sign_record

WALL_S = 1_700_000_000.0


def cfg(**kw: object) -> Config:
    base: dict[str, object] = {"liveness_tick_s": 1.0}
    base.update(kw)
    return Config(**base)  # type: ignore[arg-type]


class Net:
    def __init__(self, n: int, config: Config | None = None, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.now = 0.0
        self.config = config or cfg()
        self.nodes = [
            DhtProtocol(Identity.generate(rng), self.config, random.Random(i), 0.0, WALL_S)
            for i in range(n)
        ]
        self.by_id = {p.id: p for p in self.nodes}
        self.dead: set[NodeId] = set()
        self.sent: list[tuple[NodeId, NodeId, Message]] = []
        self.results: dict[tuple[NodeId, int], OpResult] = {}
        self.events: dict[NodeId, list[Event]] = {p.id: [] for p in self.nodes}
        self.drop: Callable[[NodeId, NodeId, Message], bool] = lambda s, d, m: False

    def meet(self, a: DhtProtocol, b: DhtProtocol, connected: bool = False) -> None:
        if connected:
            a.peer_connected(b.id, self.now)
            b.peer_connected(a.id, self.now)
        else:
            a.add_contact(b.id, self.now)
            b.add_contact(a.id, self.now)

    def mesh(self, connected: bool = False) -> None:
        for i, a in enumerate(self.nodes):
            for b in self.nodes[i + 1 :]:
                self.meet(a, b, connected)

    def _collect(self, p: DhtProtocol) -> None:
        from node.events import OpCompleted

        while (ev := p.next_event()) is not None:
            if isinstance(ev, OpCompleted):
                self.results[(p.id, ev.op_id)] = ev.result
            else:
                self.events[p.id].append(ev)

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            for p in self.nodes:
                self._collect(p)
                if p.id in self.dead:
                    p.messages_to_send()
                    continue
                for out in p.messages_to_send():
                    busy = True
                    self.sent.append((p.id, out.peer, out.message))
                    dst = self.by_id.get(out.peer)
                    if dst is None or dst.id in self.dead or self.drop(p.id, dst.id, out.message):
                        continue
                    dst.receive(p.id, codec.encode(out.message), self.now)
                self._collect(p)

    def run_until(self, t: float) -> None:
        self.pump()
        while True:
            live = [p for p in self.nodes if p.id not in self.dead]
            due = min((p.get_timer() or float("inf")) for p in live)
            if due > t:
                break
            self.now = max(self.now, due)
            for p in live:
                timer = p.get_timer()
                if timer is not None and timer <= self.now:
                    p.handle_timer(self.now)
            self.pump()
        self.now = t

    def run(
        self, p: DhtProtocol, start: Callable[[DhtProtocol, float], int], limit: float = 30.0
    ) -> OpResult:
        op = start(p, self.now)
        self.pump()
        deadline = self.now + limit
        while (p.id, op) not in self.results and self.now < deadline:
            live = [q for q in self.nodes if q.id not in self.dead]
            due = min((q.get_timer() or float("inf")) for q in live)
            self.run_until(min(due, deadline))
        return self.results.pop((p.id, op))


def holds(p: DhtProtocol, key: bytes, data: bytes, ts: int | None = None) -> Record:
    """``p`` holds a record it signed itself (written straight into its store at t=0)."""
    rec = sign_record(p.identity, key, data, p.wall_ms(0.0) if ts is None else ts)
    p.records.put(rec, 0.0)
    return rec
