"""``DhtProtocol`` operations between nodes wired by hand (``tests.support.protocol_net``)."""

from __future__ import annotations

from node.events import (
    FindNodeResult,
    GetResult,
    PingResult,
    StoreResult,
)
from node.ids import key_id
from node.messages import Store
from tests.support.protocol_net import Net, cfg

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
