"""The lookup iterator, driven by a scripted fake network (no I/O, no timers)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from node.ids import NodeId, as_int, random_id
from node.lookup import LookupIter, PeerState


def ids(n: int, seed: int = 0) -> list[NodeId]:
    rng = random.Random(seed)
    return [random_id(rng) for _ in range(n)]


def by_distance(peers: list[NodeId], target: bytes) -> list[NodeId]:
    t = as_int(target)
    return sorted(peers, key=lambda p: as_int(p) ^ t)


TARGET = NodeId(bytes(32))
OWN = NodeId(b"\xff" * 32)


def test_alpha_in_flight_and_new_request_as_soon_as_one_returns() -> None:
    peers = ids(10)
    it = LookupIter(TARGET, OWN, peers, k=20, alpha=3)
    first = [it.next_peer() for _ in range(3)]
    assert all(c is not None for c in first)
    assert it.next_peer() is None  # α reached
    assert it.in_flight == 3
    order = by_distance(peers, TARGET)
    assert [c.id for c in first if c] == order[:3]  # closest first
    assert it.on_success(order[1], [])
    nxt = it.next_peer()  # one slot free: one new request, no waiting for the "round"
    assert nxt is not None
    assert nxt.id == order[3]
    assert it.next_peer() is None


def test_self_is_filtered() -> None:
    peers = ids(3)
    it = LookupIter(TARGET, OWN, [OWN, *peers], k=20, alpha=5)
    got = []
    while (c := it.next_peer()) is not None:
        got.append(c.id)
    assert OWN not in got
    assert set(got) == set(peers)
    it.on_success(got[0], [OWN])
    assert it.candidate(OWN) is None


def test_finishes_when_k_closest_answered_and_failures_do_not_block() -> None:
    peers = ids(8, 1)
    order = by_distance(peers, TARGET)
    it = LookupIter(TARGET, OWN, peers, k=3, alpha=2)
    a, b = it.next_peer(), it.next_peer()
    assert a
    assert b
    assert [a.id, b.id] == order[:2]
    assert it.on_failure(a.id)  # failure: the next candidate takes the slot
    c = it.next_peer()
    assert c is not None
    assert c.id == order[2]
    assert not it.finished
    it.on_success(b.id, [])
    it.on_success(c.id, [])
    d = it.next_peer()
    assert d is not None
    assert d.id == order[3]
    assert it.next_peer() is None  # only in k=3 window: nothing farther is asked
    assert not it.finished
    it.on_success(d.id, [])
    assert it.finished
    assert it.closest_succeeded() == order[1:4]
    assert it.next_peer() is None
    assert it.contacted == 4
    assert it.failed == 1
    # candidates beyond the k closest were never contacted
    assert all(it.candidate(p).state is PeerState.NOT_CONTACTED for p in order[4:])  # type: ignore[union-attr]


def test_finishes_when_everyone_failed_or_no_candidates() -> None:
    assert LookupIter(TARGET, OWN, [], k=3, alpha=3).finished
    peers = ids(2, 2)
    it = LookupIter(TARGET, OWN, peers, k=3, alpha=3)
    for p in [it.next_peer(), it.next_peer()]:
        assert p is not None
        it.on_failure(p.id)
    assert it.finished
    assert it.closest_succeeded() == []


def test_unexpected_reports_are_ignored() -> None:
    peers = ids(2, 3)
    it = LookupIter(TARGET, OWN, peers, k=3, alpha=1)
    c = it.next_peer()
    assert c is not None
    other = next(p for p in peers if p != c.id)
    assert not it.on_success(other, [])  # not awaited
    assert not it.on_failure(other)
    assert not it.on_success(ids(1, 9)[0], [])  # unknown
    assert it.on_success(c.id, [])
    assert not it.on_success(c.id, [])  # twice
    assert not it.on_failure(c.id)


def test_finish_stops_requests() -> None:
    it = LookupIter(TARGET, OWN, ids(5, 4), k=3, alpha=1)
    assert it.next_peer() is not None
    it.finish()
    assert it.finished
    assert it.next_peer() is None


def test_depth_and_via_accounting() -> None:
    a, b, c = ids(3, 5)
    it = LookupIter(TARGET, OWN, [a], k=5, alpha=1)
    assert it.next_peer() is not None
    it.on_success(a, [b])
    assert it.depth(a) == 1
    assert it.depth(b) == 2
    cb = it.candidate(b)
    assert cb is not None
    assert cb.via == a
    assert it.next_peer() is not None
    it.on_success(b, [c, a])  # a is known: depth unchanged
    assert it.depth(c) == 3
    assert it.depth(a) == 1
    assert it.depth(NodeId(bytes(32))) == 0
    assert it.closest_seen(2) == by_distance([a, b, c], TARGET)[:2]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[list[NodeId], dict[NodeId, list[NodeId]], set[NodeId]]:
    n = draw(st.integers(1, 40))
    peers = ids(n, draw(st.integers(0, 10**6)))
    graph = {p: draw(st.lists(st.sampled_from(peers), max_size=8)) for p in peers}
    dead = set(draw(st.lists(st.sampled_from(peers), max_size=n)))
    return peers, graph, dead


@settings(deadline=None, max_examples=300)
@given(graphs(), st.integers(1, 8), st.integers(1, 5), st.randoms(use_true_random=False))
def test_random_response_graphs_always_terminate(
    g: tuple[list[NodeId], dict[NodeId, list[NodeId]], set[NodeId]],
    k: int,
    alpha: int,
    rnd: random.Random,
) -> None:
    peers, graph, dead = g
    it = LookupIter(TARGET, OWN, peers[:2], k=k, alpha=alpha)
    waiting: list[NodeId] = []
    contacted: set[NodeId] = set()
    steps = 0
    while not it.finished:
        steps += 1
        assert steps <= 2 * len(peers) + 2, "lookup did not terminate"
        while (c := it.next_peer()) is not None:
            assert c.id not in contacted  # never asks anyone twice
            contacted.add(c.id)
            waiting.append(c.id)
            # α while making progress; up to k once stalled (the final round)
            assert it.in_flight <= (max(k, alpha) if it.stalled else alpha)
        assert waiting, "not finished but nothing in flight"
        p = waiting.pop(rnd.randrange(len(waiting)))
        if p in dead:
            it.on_failure(p)
        else:
            it.on_success(p, graph[p])
    # The result: the k closest non-failed peers that were reached all answered.
    result = it.closest_succeeded()
    assert len(result) <= k
    assert all(p not in dead for p in result)
    assert result == by_distance(result, TARGET)


def test_stalled_lookup_asks_the_remaining_closest_at_once() -> None:
    peers = ids(12)
    it = LookupIter(TARGET, OWN, peers, k=8, alpha=2)
    order = by_distance(peers, TARGET)
    first = [it.next_peer() for _ in range(2)]
    assert [c.id for c in first if c] == order[:2]
    # Two answers in a row with nothing closer: stalled, so the rest of the k closest go out.
    assert it.on_success(order[0], [])
    assert not it.stalled
    assert it.on_success(order[1], [])
    assert it.stalled
    burst = []
    while (c := it.next_peer()) is not None:
        burst.append(c.id)
    assert burst == order[2:8]  # the remaining 6 of the 8 closest, no more
    assert it.in_flight == 6
    # A closer peer ends the stall: back to alpha in flight.
    closer = NodeId(bytes(x ^ y for x, y in zip(TARGET, b"\x00" * 31 + b"\x01", strict=True)))
    assert it.on_success(order[2], [closer])
    assert not it.stalled
    assert it.next_peer() is None  # 5 in flight >= alpha
