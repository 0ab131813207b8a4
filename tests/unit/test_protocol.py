"""``DhtProtocol`` instances wired by hand in memory: time is stepped, every message is encoded.

The ``Net`` below moves ``messages_to_send()`` between protocols through the real codec (as a
data channel would), delivers instantly, and fires timers in deadline order. Dead nodes drop
everything addressed to them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import codec
from node.config import Config
from node.events import (
    ContactRemoved,
    Event,
    FindNodeResult,
    GetResult,
    OpResult,
    PeerLeft,
    PeerMisbehaved,
    PeerUnresponsive,
    PingResult,
    SignalReceived,
    StoreResult,
)
from node.identity import Identity
from node.ids import NodeId, key_id
from node.messages import FindValue, Message, Nodes, Ping, Pong, Signal, Store, StoreAck, Value
from node.protocol import DhtProtocol
from node.records import Record, sign_record
from node.routing import RemovalReason

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


# -- basic operations ------------------------------------------------------------------------------


def test_ping() -> None:
    net = Net(2)
    a, b = net.nodes
    net.meet(a, b)
    res = net.run(a, lambda p, now: p.ping(b.id, now))
    assert res == PingResult(b.id, True, 0.0)
    net.dead.add(b.id)
    res = net.run(a, lambda p, now: p.ping(b.id, now))
    assert isinstance(res, PingResult)
    assert not res.ok
    assert res.rtt_s == net.config.request_timeout_s


def test_find_node_walks_the_chain() -> None:
    net = Net(4)
    a, b, c, d = net.nodes
    net.meet(a, b)
    net.meet(b, c)
    net.meet(c, d)
    res = net.run(a, lambda p, now: p.find_node(d.id, now))
    assert isinstance(res, FindNodeResult)
    assert d.id in res.closest
    assert a.id not in res.closest
    assert set(res.closest) == {b.id, c.id, d.id}
    assert res.hops >= 1
    assert res.contacted == 3
    assert res.failed == 0


def test_one_node_store_succeeds_with_quorum_zero() -> None:
    net = Net(1)
    (a,) = net.nodes
    res = net.run(a, lambda p, now: p.store(key_id("k"), b"v", now))
    assert isinstance(res, StoreResult)
    assert (res.ok, res.acks, res.attempts, res.quorum) == (True, 0, 0, 0)
    got = net.run(a, lambda p, now: p.get(key_id("k"), now))
    assert isinstance(got, GetResult)
    assert got.record is not None
    assert got.record.data == b"v"
    assert got.local


def test_store_quorum_on_tiny_networks() -> None:
    for n, quorum in [(2, 1), (3, 1), (5, 2), (30, 10)]:
        net = Net(n, seed=n)
        net.mesh()
        res = net.run(net.nodes[0], lambda p, now: p.store(key_id("k"), b"v", now))
        assert isinstance(res, StoreResult)
        targets = min(n - 1, net.config.k)
        assert res.attempts == targets
        assert res.quorum == min(net.config.quorum_w, -(-targets // 2)) == quorum
        assert res.ok
        # The store reports as soon as the quorum acknowledged; the other replicas still land.
        assert quorum <= res.acks <= targets
        net.run_until(net.now + 1.0)
        holders = [p for p in net.nodes if p.records.get(key_id("k"), net.now) is not None]
        assert len(holders) == n if n <= net.config.k else len(holders) >= targets


def test_store_fails_without_quorum_and_says_so() -> None:
    net = Net(5)
    net.mesh()
    a = net.nodes[0]
    # Three of the four peers answer the lookup without storing (they do not count themselves
    # among the closest), then never see the STORE that follows.
    silent = {p.id for p in net.nodes[1:4]}
    for p in net.nodes[1:4]:
        p.responder._among_closest = lambda key: False  # type: ignore[method-assign]
    net.drop = lambda s, d, m: isinstance(m, Store) and d in silent
    res = net.run(a, lambda p, now: p.store(key_id("k"), b"v", now))
    assert isinstance(res, StoreResult)
    assert (res.ok, res.acks, res.attempts, res.quorum) == (False, 1, 4, 2)
    assert res.reasons == ("timeout",) * 3
    stores = [d for _, d, m in net.sent if isinstance(m, Store)]
    assert sorted(stores) == sorted(silent)  # only the ones that did not store early


def test_refusals_during_the_lookup_count_against_the_quorum() -> None:
    net = Net(5)
    net.mesh()
    for p in net.nodes[1:4]:
        p.records.max_records = 0  # full: FIND_NODE_STORE answers "full"
    res = net.run(net.nodes[0], lambda p, now: p.store(key_id("k"), b"v", now))
    assert isinstance(res, StoreResult)
    assert (res.ok, res.acks, res.attempts, res.quorum) == (False, 1, 4, 2)
    assert res.reasons == ("full",) * 3
    assert not [m for _, _, m in net.sent if isinstance(m, Store)]  # a refusal is not retried


def test_a_put_stores_with_the_lookup_and_sends_no_separate_store() -> None:
    net = Net(8)
    net.mesh()
    res = net.run(net.nodes[0], lambda p, now: p.store(key_id("k"), b"v", now))
    assert isinstance(res, StoreResult)
    assert (res.ok, res.acks, res.attempts) == (True, 7, 7)
    kinds = [type(m).__name__ for s, _, m in net.sent if s == net.nodes[0].id]
    assert kinds == ["FindNodeStore"] * 7
    assert all(p.records.get(key_id("k"), net.now) == res.record for p in net.nodes)


def test_quorum_counts_only_nodes_actually_found() -> None:
    net = Net(5)
    net.mesh()
    for p in net.nodes[1:4]:
        net.dead.add(p.id)
    res = net.run(net.nodes[0], lambda p, now: p.store(key_id("k"), b"v", now))
    assert isinstance(res, StoreResult)
    assert (res.ok, res.acks, res.attempts, res.quorum) == (True, 1, 1, 1)


def test_get_from_another_node() -> None:
    net = Net(6)
    net.mesh()
    stored = net.run(net.nodes[0], lambda p, now: p.store(key_id("k"), b"hello", now))
    assert isinstance(stored, StoreResult)
    assert stored.ok
    res = net.run(net.nodes[5], lambda p, now: p.get(key_id("k"), now))
    assert isinstance(res, GetResult)
    assert res.record == stored.record
    assert not res.local


def test_not_found_before_lookup_deadline() -> None:
    net = Net(4)
    net.mesh()
    start = net.now
    res = net.run(net.nodes[0], lambda p, now: p.get(key_id("missing"), now))
    assert isinstance(res, GetResult)
    assert res.record is None
    assert net.now - start < net.config.lookup_deadline_s
    assert res.contacted == 3


def test_lookup_deadline_ends_a_stuck_lookup() -> None:
    config = cfg(request_timeout_s=50.0, lookup_deadline_s=5.0)
    net = Net(3, config)
    net.mesh()
    net.dead.add(net.nodes[1].id)
    net.dead.add(net.nodes[2].id)
    start = net.now
    res = net.run(net.nodes[0], lambda p, now: p.get(key_id("x"), now))
    assert isinstance(res, GetResult)
    assert res.record is None
    assert res.duration_s == net.now - start == config.lookup_deadline_s


# -- bad input -------------------------------------------------------------------------------------


def _outgoing_ping(net: Net, a: DhtProtocol, b: DhtProtocol) -> int:
    op = a.ping(b.id, net.now)
    out = a.messages_to_send()
    assert len(out) == 1
    assert isinstance(out[0].message, Ping)
    assert out[0].peer == b.id
    return op, out[0].message.rid  # type: ignore[return-value]


def test_unexpected_responses_are_dropped_and_counted() -> None:
    net = Net(3)
    a, b, c = net.nodes
    net.meet(a, b)
    op, rid = _outgoing_ping(net, a, b)  # type: ignore[misc]
    a.receive(c.id, codec.encode(Pong(rid)), net.now)  # wrong peer
    a.receive(b.id, codec.encode(Nodes(rid, ())), net.now)  # wrong type
    a.receive(b.id, codec.encode(Pong(rid ^ 1)), net.now)  # unknown rid
    assert a.stats.dropped_unexpected == 3
    net._collect(a)
    assert (a.id, op) not in net.results
    assert a.pending_requests() == 1
    a.receive(b.id, codec.encode(Pong(rid)), net.now + 0.5)
    net._collect(a)
    assert net.results[(a.id, op)] == PingResult(b.id, True, 0.5)
    a.receive(b.id, codec.encode(Pong(rid)), net.now + 0.6)  # a duplicate answer
    assert a.stats.dropped_unexpected == 4


def test_malformed_bytes_are_counted_and_reported() -> None:
    net = Net(2)
    a, b = net.nodes
    for i, junk in enumerate([b"", b"\xc1", msgpack.packb([99, 1]), msgpack.packb([1, -1])]):
        a.receive(b.id, junk, net.now)
        ev = a.next_event()
        assert ev == PeerMisbehaved(b.id, ev.reason, i + 1)  # type: ignore[union-attr]
    assert a.stats.dropped_malformed == 4
    assert a.malformed_by_peer[b.id] == 4
    assert b.id not in a.table  # a peer that only sent junk is not a contact
    assert a.messages_to_send() == []


fuzz_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=15,
)


@settings(deadline=None, max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda t, f: msgpack.packb([t, *f]),
            st.integers(0, 16),
            st.lists(fuzz_values, max_size=6),
        ),
    )
)
def test_receive_never_raises(data: bytes) -> None:
    net = _FUZZ_NET
    a, b = net.nodes
    a.receive(b.id, data, net.now)
    a.messages_to_send()
    while a.next_event() is not None:
        pass


_FUZZ_NET = Net(2, seed=99)


# -- records under attack --------------------------------------------------------------------------


def _store_direct(net: Net, sender: DhtProtocol, receiver: DhtProtocol, msg: Store) -> StoreAck:
    receiver.receive(sender.id, codec.encode(msg), net.now)
    out = [o for o in receiver.messages_to_send() if o.peer == sender.id]
    assert len(out) == 1
    assert isinstance(out[0].message, StoreAck)
    return out[0].message


def test_far_future_and_forged_records_never_displace_the_honest_one() -> None:
    net = Net(3)
    alice, holder, mallory = net.nodes
    net.meet(alice, holder)
    key = key_id("k")
    res = net.run(alice, lambda p, now: p.store(key, b"honest", now))
    assert isinstance(res, StoreResult)
    assert res.ok
    honest = holder.records.get(key, net.now)
    assert honest is not None
    assert honest.data == b"honest"
    wall = holder.wall_ms(net.now)
    far = sign_record(mallory.identity, key, b"evil", wall + 3600_000)
    ack = _store_direct(net, mallory, holder, Store(1, far, False))
    assert not ack.ok
    assert ack.reason == "timestamp too far in the future"
    forged = dataclasses.replace(honest, data=b"evil", ts=honest.ts + 1)
    ack = _store_direct(net, mallory, holder, Store(2, forged, False))
    assert not ack.ok
    assert ack.reason == "bad signature"
    stolen_key = dataclasses.replace(
        sign_record(mallory.identity, key, b"evil", honest.ts + 1),
        public_key=alice.identity.public_key,
    )
    ack = _store_direct(net, mallory, holder, Store(3, stolen_key, True))
    assert not ack.ok
    assert ack.reason == "bad signature"
    older = sign_record(mallory.identity, key, b"old", honest.ts - 1)
    ack = _store_direct(net, mallory, holder, Store(4, older, False))
    assert not ack.ok
    assert ack.reason == "stale"
    assert holder.records.get(key, net.now) == honest
    assert holder.stats.records_rejected == 3
    # A getter is not fooled by a malicious VALUE either.
    net.meet(mallory, holder)
    got = net.run(holder, lambda p, now: p.get(key, now))
    assert isinstance(got, GetResult)
    assert got.record == honest


def holds(p: DhtProtocol, key: bytes, data: bytes, ts: int | None = None) -> Record:
    """``p`` holds a record it signed itself (written straight into its store at t=0)."""
    rec = sign_record(p.identity, key, data, p.wall_ms(0.0) if ts is None else ts)
    p.records.put(rec, 0.0)
    return rec


def test_forged_value_in_a_lookup_is_ignored() -> None:
    net = Net(3)
    net.mesh()
    getter, honest_holder, mallory = net.nodes
    key = key_id("k")
    rec = holds(honest_holder, key, b"good")
    far = sign_record(mallory.identity, key, b"evil", mallory.wall_ms(0.0) + 3600_000)

    # mallory answers every FIND_VALUE with the far-future record
    orig = mallory.receive

    def evil_receive(peer: NodeId, data: bytes | Message, now: float) -> None:
        msg = codec.decode(data) if isinstance(data, bytes) else data
        if isinstance(msg, FindValue):
            mallory._send(peer, Value(msg.rid, far, ()))
            return
        orig(peer, data, now)

    mallory.receive = evil_receive  # type: ignore[method-assign]
    got = net.run(getter, lambda p, now: p.get(key, now))
    assert isinstance(got, GetResult)
    assert got.record == rec
    assert getter.stats.records_rejected >= 1


# -- expiry, repair, republish ---------------------------------------------------------------------


def test_expired_records_are_never_served_nor_repaired() -> None:
    config = cfg(record_ttl_s=50.0, repair_interval_s=100.0, republish_interval_s=10_000.0)
    net = Net(2, config)
    a, b = net.nodes
    net.meet(a, b)
    key = key_id("k")
    holds(a, key, b"v")
    net.run_until(99.0)
    assert any(type(e).__name__ == "RecordExpired" for e in net.events[a.id])
    net.sent.clear()
    net.run_until(150.0)  # the repair round ran at t=100
    assert not [m for _, _, m in net.sent if type(m).__name__ in ("HasValue", "Store")]
    fv = FindValue(7, key)
    a.receive(b.id, codec.encode(fv), net.now)
    (out,) = a.messages_to_send()
    assert isinstance(out.message, Nodes)


def test_repair_restores_a_missing_replica() -> None:
    config = cfg(record_ttl_s=500.0, repair_interval_s=30.0, republish_interval_s=10_000.0)
    net = Net(3, config)
    a, b, c = net.nodes
    net.mesh()
    key = key_id("k")
    rec = holds(a, key, b"v")
    net.run_until(40.0)
    assert b.records.get(key, net.now) == rec
    assert c.records.get(key, net.now) == rec
    stored = [(s, d) for s, d, m in net.sent if isinstance(m, Store)]
    assert sorted(stored) == sorted([(a.id, b.id), (a.id, c.id)])


def test_republish_refreshes_expiry_everywhere_including_own_copy() -> None:
    config = cfg(record_ttl_s=100.0, republish_interval_s=80.0, repair_interval_s=10_000.0)
    net = Net(3, config)
    net.mesh()
    a = net.nodes[0]
    key = key_id("k")
    res = net.run(a, lambda p, now: p.store(key, b"v", now))
    assert isinstance(res, StoreResult)
    assert res.ok
    net.run_until(250.0)
    for p in net.nodes:
        e = p.records.entry(key, net.now)
        assert e is not None
        assert e.record == res.record
        assert e.expires_at > 250.0


# -- liveness --------------------------------------------------------------------------------------


def test_silent_connected_peer_is_removed() -> None:
    config = cfg(ping_idle_s=4.0, liveness_tick_s=1.0, ping_timeout_s=3.0)
    net = Net(2, config)
    a, b = net.nodes
    net.meet(a, b, connected=True)
    net.run_until(20.0)
    assert b.id in a.table  # answers its pings: stays
    assert not any(isinstance(e, PeerUnresponsive) for e in net.events[a.id])
    silent_since = net.now
    net.dead.add(b.id)
    limit = silent_since + config.ping_idle_s + config.liveness_tick_s + config.ping_timeout_s
    net.run_until(limit + 1e-9)
    assert PeerUnresponsive(b.id) in net.events[a.id]
    assert b.id not in a.table


def test_transport_liveness_sends_no_pings_and_peer_lost_evicts() -> None:
    net = Net(2, cfg(transport_liveness=True, ping_idle_s=4.0))
    a, b = net.nodes
    net.meet(a, b, connected=True)
    net.run_until(60.0)  # silent for 15 ping intervals: the transport probes, not the core
    assert [m for _, _, m in net.sent if isinstance(m, Ping)] == []
    assert b.id in a.table
    a.peer_lost(b.id, net.now)
    net.pump()
    assert b.id not in a.table
    assert b.id not in a.connected
    assert ContactRemoved(b.id, RemovalReason.LIVENESS_LOST) in net.events[a.id]


# -- SIGNAL ----------------------------------------------------------------------------------------


def test_signal_routing_dedup_and_hop_limit() -> None:
    net = Net(4)
    a, b, c, d = net.nodes
    net.meet(a, b, connected=True)
    net.meet(b, c, connected=True)
    net.meet(c, d, connected=True)
    assert a.send_signal(d.id, b"offer", net.now)
    net.pump()
    got = [e for e in net.events[d.id] if isinstance(e, SignalReceived)]
    assert got == [SignalReceived(a.id, b"offer")]
    path = [(s, t) for s, t, m in net.sent if isinstance(m, Signal)]
    assert path == [(a.id, b.id), (b.id, c.id), (c.id, d.id)]
    sig = next(m for _, _, m in net.sent if isinstance(m, Signal) and m.hops_left < 8)
    # dedup: the same signal again is ignored
    d.receive(c.id, codec.encode(sig), net.now)
    net._collect(d)
    assert len([e for e in net.events[d.id] if isinstance(e, SignalReceived)]) == 1
    # hop limit: an exhausted signal is not forwarded
    net.sent.clear()
    c.receive(b.id, codec.encode(Signal(12345, a.id, d.id, 0, b"x")), net.now)
    net.pump()
    assert net.sent == []
    b.receive(a.id, codec.encode(Signal(777, a.id, d.id, 1, b"y")), net.now)
    net.pump()
    assert [(s, t, m.hops_left) for s, t, m in net.sent if isinstance(m, Signal)] == [
        (b.id, c.id, 0)
    ]
    assert SignalReceived(a.id, b"y") not in net.events[d.id]
    # no connected peer: nothing to route through
    lonely = Net(1).nodes[0]
    assert not lonely.send_signal(d.id, b"z", 0.0)


def test_get_returns_the_best_record_among_in_flight_answers() -> None:
    """The first VALUE ends the lookup, but answers already in flight may still improve it."""
    net = Net(3)
    net.mesh()
    getter, old_holder, new_holder = net.nodes
    old = holds(old_holder, key_id("k"), b"old")
    new = holds(new_holder, key_id("k"), b"new", ts=old.ts + 1)
    got = net.run(getter, lambda p, now: p.get(key_id("k"), now))
    assert isinstance(got, GetResult)
    assert got.record == new


def test_join_refresh_stops_once_a_refresh_finds_nobody_new() -> None:
    # Everyone already knows everyone: the self-lookup and one refresh confirm it, and the
    # remaining join refreshes (which could only repeat known answers) are dropped.
    for seed in range(50):
        net = Net(12, cfg(join_refresh_below=20), seed=seed)
        net.mesh()
        node = net.nodes[0]
        if node.table.deepest_bucket() >= 3:
            break
    else:
        pytest.fail("no seed gave a table with >= 3 buckets to refresh")
    before = node.stats.lookups
    net.run(node, lambda p, now: p.join(now))
    net.run_until(net.now + 30.0)
    assert node.stats.lookups - before == 2  # the self-lookup and a single refresh
    assert node.maintenance.queued_refreshes == 0


def _join_lookups(config: Config) -> tuple[int, int]:
    """A node that knows one hub (which knows 30 others) joins: (lookups it ran, buckets that
    were empty after its self-lookup)."""
    net = Net(32, config, seed=3)
    a, hub = net.nodes[0], net.nodes[1]
    for p in net.nodes[2:]:
        net.meet(hub, p)
    net.meet(a, hub)
    before = a.stats.lookups
    a.join(net.now)
    net.pump()  # the self-lookup completes on the instant network
    empty = sum(1 for i in range(a.table.deepest_bucket()) if a.table.bucket_count(i) == 0)
    net.run_until(net.now + 120.0)
    return a.stats.lookups - before, empty


def test_join_refreshes_only_empty_buckets_by_default() -> None:
    lookups, empty = _join_lookups(cfg())
    assert 1 <= lookups <= 1 + empty
    every_non_full, _ = _join_lookups(cfg(join_refresh_below=20))
    assert every_non_full > lookups


def test_bye_drops_the_sender_from_every_table_at_once() -> None:
    net = Net(4)
    net.mesh(connected=True)
    a, b, c, d = net.nodes
    # a request to d is in flight when d leaves: it fails at once, not after the timeout
    op = b.ping(d.id, net.now)
    net.dead.add(d.id)  # d answers nothing more; only its BYEs (sent below) get out
    net.pump()
    told = d.leave()
    assert set(told) == {a.id, b.id, c.id}
    for out in d.messages_to_send():
        net.by_id[out.peer].receive(d.id, codec.encode(out.message), net.now)
    net.pump()
    for p in (a, b, c):
        assert d.id not in p.table
        assert d.id not in p.connected
        assert {q.id for q in (a, b, c)} - {p.id} == {x.id for x in p.table.contacts()}
        assert PeerLeft(d.id) in net.events[p.id]
        assert ContactRemoved(d.id, "left") in net.events[p.id]
    res = net.results.pop((b.id, op))
    assert isinstance(res, PingResult)
    assert not res.ok
    assert res.rtt_s == 0.0  # failed on the BYE, no timeout waited
