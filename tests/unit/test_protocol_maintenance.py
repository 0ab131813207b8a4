"""``DhtProtocol`` over time: expiry, repair, republish, liveness, SIGNAL routing, joins."""

from __future__ import annotations

import pytest

from node import codec
from node.config import Config
from node.events import (
    ContactRemoved,
    GetResult,
    PeerLeft,
    PeerUnresponsive,
    PingResult,
    SignalReceived,
    StoreResult,
)
from node.ids import key_id
from node.messages import FindValue, Nodes, Ping, Signal, Store
from node.routing import RemovalReason
from tests.support.protocol_net import Net, cfg, holds

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
