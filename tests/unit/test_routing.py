"""Routing table: exact closest(), k-bucket LRS order, replacement cache, failures."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from node.ids import ID_BITS, NodeId, as_int, bucket_index, random_id_in_bucket
from node.routing import RoutingTable

b32 = st.binary(min_size=32, max_size=32).map(NodeId)


def in_bucket(own: NodeId, index: int, seed: int) -> NodeId:
    return random_id_in_bucket(own, index, random.Random(seed))


def brute_closest(ids: list[NodeId], target: bytes, n: int) -> list[NodeId]:
    t = as_int(target)
    return sorted(ids, key=lambda x: as_int(x) ^ t)[:n]


@st.composite
def tables(draw: st.DrawFn) -> tuple[RoutingTable, list[NodeId]]:
    own = draw(b32)
    k = draw(st.integers(1, 8))
    table = RoutingTable(own, k)
    # Contacts everywhere, with a bias towards deep buckets (many near the own id).
    n_random = draw(st.integers(0, 40))
    seeds = draw(st.lists(st.integers(0, 2**32), min_size=n_random, max_size=n_random))
    deep = draw(
        st.lists(st.tuples(st.integers(0, ID_BITS - 1), st.integers(0, 2**32)), max_size=60)
    )
    candidates = [
        random_id_in_bucket(own, random.Random(s).randrange(ID_BITS), random.Random(s))
        for s in seeds
    ]
    candidates += [in_bucket(own, ID_BITS - 1 - (i % 12), s) for i, s in deep]
    candidates += draw(st.lists(b32, max_size=10))
    for t, c in enumerate(candidates):
        table.update(c, float(t))
    stored = [c.id for c in table.contacts()]
    return table, stored


@settings(deadline=None, max_examples=300)
@given(tables(), st.data())
def test_closest_is_exact(tv: tuple[RoutingTable, list[NodeId]], data: st.DataObject) -> None:
    table, stored = tv
    assert len(stored) == len(set(stored)) == len(table)
    assert table.own_id not in stored
    kind = data.draw(st.sampled_from(["own", "random", "stored", "near"]))
    if kind == "own":
        target = table.own_id
    elif kind == "stored" and stored:
        target = data.draw(st.sampled_from(stored))
    elif kind == "near":
        target = in_bucket(
            table.own_id, data.draw(st.integers(200, 255)), data.draw(st.integers(0, 99))
        )
    else:
        target = data.draw(b32)
    n = data.draw(st.integers(1, 30))
    assert table.closest(target, n) == brute_closest(stored, target, n)
    if stored:
        ex = data.draw(st.sampled_from(stored))
        expected = brute_closest([s for s in stored if s != ex], target, n)
        assert table.closest(target, n, exclude=ex) == expected


def test_closest_includes_deeper_buckets() -> None:
    """The JS bug: for a target in bucket b, contacts of buckets deeper than b were skipped."""
    own = NodeId(bytes(32))
    table = RoutingTable(own, k=20)
    deep = [in_bucket(own, 250 + i, i) for i in range(5)]
    far = in_bucket(own, 3, 99)
    for i, c in enumerate([*deep, far]):
        table.update(c, float(i))
    target = in_bucket(own, 100, 5)
    assert table.closest(target, 5) == brute_closest([*deep, far], target, 5)
    assert set(table.closest(target, 5)) == set(deep)
    assert table.closest(target, 0) == []
    assert RoutingTable(own).closest(target, 3) == []


def _table_with_full_bucket(k: int = 3) -> tuple[RoutingTable, list[NodeId]]:
    own = NodeId(bytes(32))
    table = RoutingTable(own, k=k)
    members = [in_bucket(own, 0, s) for s in range(k)]
    for t, m in enumerate(members):
        assert table.update(m, float(t)) is None
    return table, members


def _bucket0(table: RoutingTable) -> tuple[list[NodeId], list[NodeId]]:
    b = dict(table.buckets())[0]
    return [c.id for c in b.contacts], list(b.replacements)


def test_lrs_order_and_move_to_tail() -> None:
    table, m = _table_with_full_bucket()
    assert _bucket0(table)[0] == m
    assert table.update(m[0], 10.0) is None  # seen again: moves to the tail
    assert _bucket0(table)[0] == [m[1], m[2], m[0]]
    c = table.contact(m[0])
    assert c is not None
    assert c.last_seen == 10.0


def test_full_bucket_returns_oldest_and_caches_newcomers() -> None:
    k = 3
    table, m = _table_with_full_bucket(k)
    newcomers = [in_bucket(table.own_id, 0, 100 + i) for i in range(k + 2)]
    for i, n in enumerate(newcomers):
        assert table.update(n, 20.0 + i) == m[0]  # ping the least recently seen
    contacts, repl = _bucket0(table)
    assert contacts == m
    assert repl == list(reversed(newcomers))[:k]  # newest first, capped at k
    assert newcomers[0] not in table
    # A replacement seen again moves to the front, without duplicates.
    table.update(newcomers[2], 30.0)
    _, repl = _bucket0(table)
    assert repl[0] == newcomers[2]
    assert len(repl) == len(set(repl)) == k


def test_remove_promotes_newest_replacement() -> None:
    table, m = _table_with_full_bucket()
    a, b = in_bucket(table.own_id, 0, 200), in_bucket(table.own_id, 0, 201)
    table.update(a, 5.0)
    table.update(b, 6.0)
    assert table.remove(m[0]) is True
    contacts, repl = _bucket0(table)
    assert contacts == [m[1], m[2], b]
    assert repl == [a]
    assert len(table) == 3
    assert table.remove(m[0]) is False
    assert table.remove(table.own_id) is False


def test_record_failure_semantics() -> None:
    own = NodeId(bytes(32))
    table = RoutingTable(own, k=3)
    x = in_bucket(own, 5, 1)
    table.update(x, 0.0)
    assert table.record_failure(x, max_failures=2) is False
    c = table.contact(x)
    assert c is not None
    assert c.failures == 1
    table.update(x, 1.0)  # answered: failures reset
    assert c.failures == 0
    assert table.record_failure(x, 2) is False
    assert table.record_failure(x, 2) is True
    assert x not in table
    assert table.record_failure(x, 2) is False  # unknown
    # With a replacement waiting, one failure is enough.
    table2, m = _table_with_full_bucket(2)
    r = in_bucket(own, 0, 300)
    table2.update(r, 1.0)
    assert table2.record_failure(m[1], max_failures=5) is True
    assert _bucket0(table2)[0] == [m[0], r]


def test_own_id_never_stored() -> None:
    own = NodeId(bytes(range(32)))
    table = RoutingTable(own, k=2)
    assert table.update(own, 0.0) is None
    assert len(table) == 0
    assert own not in table
    assert table.contact(own) is None
    assert table.deepest_bucket() == -1
    table.update(in_bucket(own, 7, 1), 0.0)
    assert table.deepest_bucket() == 7
    assert own not in table.closest(own, 10)


@settings(deadline=None, max_examples=100)
@given(b32, st.lists(b32, max_size=50), st.integers(1, 5))
def test_bucket_invariants(own: NodeId, others: list[NodeId], k: int) -> None:
    table = RoutingTable(own, k)
    for t, o in enumerate(others):
        table.update(o, float(t))
    for index, b in table.buckets():
        assert len(b.contacts) <= k
        assert len(b.replacements) <= k
        for c in b.contacts:
            assert bucket_index(own, c.id) == index
        assert not set(b.replacements) & {c.id for c in b.contacts}
        seen = [c.last_seen for c in b.contacts]
        assert seen == sorted(seen)
    assert len(table) == sum(len(b.contacts) for _, b in table.buckets())


def test_touch_bucket() -> None:
    own = NodeId(bytes(32))
    table = RoutingTable(own, k=2, now=1.0)
    x = in_bucket(own, 4, 1)
    assert table.bucket_last_touched(4) == 1.0
    table.update(x, 2.0)
    table.touch_bucket(in_bucket(own, 4, 2), 50.0)
    assert table.bucket_last_touched(4) == 50.0
    table.touch_bucket(own, 60.0)  # no bucket for the own id: nothing happens
    assert table.bucket_last_touched(4) == 50.0
