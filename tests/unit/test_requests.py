"""Request correlation and deadlines (``node.requests``): a response matches only its request."""

from __future__ import annotations

import random

import pytest

from node.ids import NodeId
from node.messages import FindValue, Nodes, Ping, Pong, Store, StoreAck, Value
from node.records import Record
from node.requests import RTT_EWMA_WEIGHT, RequestTable, TimerKind, Timers

A = NodeId(b"\x01" * 32)
B = NodeId(b"\x02" * 32)
KEY = b"\x07" * 32


def table(seed: int = 0) -> tuple[RequestTable, Timers]:
    timers = Timers()
    return RequestTable(random.Random(seed), timers), timers


def test_a_response_matches_only_the_asked_peer_the_expected_type_and_once() -> None:
    reqs, _ = table()
    rid = reqs.new_rid()
    reqs.add(A, Ping(rid), 7, now=1.0, timeout_s=2.0)
    assert reqs.match(B, Pong(rid), 1.1) is None  # wrong peer
    assert reqs.match(A, Nodes(rid, ()), 1.1) is None  # wrong type
    assert reqs.match(A, Pong(rid ^ 1), 1.1) is None  # unknown rid
    assert len(reqs) == 1
    assert rid in reqs
    p = reqs.match(A, Pong(rid), 1.5)
    assert p is not None
    assert (p.peer, p.request, p.op_id, p.sent_at) == (A, Ping(rid), 7, 1.0)
    assert rid not in reqs
    assert reqs.match(A, Pong(rid), 1.6) is None  # a duplicate answer matches nothing


def test_find_value_accepts_either_a_value_or_nodes_but_a_store_only_its_ack() -> None:
    reqs, _ = table()
    rec = Record(KEY, b"v", 1, b"\x00" * 32, b"\x00" * 64)
    r1 = reqs.new_rid()
    reqs.add(A, FindValue(r1, KEY), 1, 0.0, 2.0)
    r2 = reqs.new_rid()
    reqs.add(A, FindValue(r2, KEY), 1, 0.0, 2.0)
    r3 = reqs.new_rid()
    reqs.add(A, Store(r3, rec, False), 2, 0.0, 2.0)
    assert reqs.match(A, Value(r1, rec, ()), 0.1) is not None
    assert reqs.match(A, Nodes(r2, ()), 0.1) is not None
    assert reqs.match(A, Nodes(r3, ()), 0.1) is None
    assert reqs.match(A, StoreAck(r3, True, "stored"), 0.1) is not None
    assert len(reqs) == 0


class _Repeating(random.Random):
    """Draws 5, 5, 5, then 6: a fresh rid must skip the pending 5."""

    def __init__(self) -> None:
        super().__init__(0)
        self.values = [5, 5, 5, 6]

    def getrandbits(self, k: int, /) -> int:
        return self.values.pop(0)


def test_new_rid_never_reuses_a_pending_id() -> None:
    reqs = RequestTable(_Repeating(), Timers())
    first = reqs.new_rid()
    reqs.add(A, Ping(first), None, 0.0, 1.0)
    assert (first, reqs.new_rid()) == (5, 6)


def test_rtt_is_a_smoothed_average_of_matched_requests() -> None:
    reqs, _ = table()
    for sent, answered in [(0.0, 1.0), (10.0, 10.2)]:
        rid = reqs.new_rid()
        reqs.add(A, Ping(rid), None, sent, 5.0)
        assert reqs.match(A, Pong(rid), answered) is not None
    assert reqs.rtt[A] == pytest.approx(1.0 + RTT_EWMA_WEIGHT * (0.2 - 1.0))
    assert B not in reqs.rtt


def test_to_peer_lists_only_that_peers_requests_oldest_first() -> None:
    reqs, _ = table()
    rids = []
    for peer in (A, B, A):
        rid = reqs.new_rid()
        rids.append(rid)
        reqs.add(peer, Ping(rid), None, 0.0, 1.0)
    assert reqs.to_peer(A) == [rids[0], rids[2]]
    assert reqs.pop(rids[0]).peer == A
    assert reqs.to_peer(A) == [rids[2]]


def test_timers_fire_in_deadline_order_and_skip_dead_entries() -> None:
    reqs, timers = table()
    rid = reqs.new_rid()
    reqs.add(A, Ping(rid), None, now=0.0, timeout_s=3.0)  # a request deadline at 3.0
    timers.arm(1.0, TimerKind.OPERATION, 41)
    timers.arm(2.0, TimerKind.OPERATION, 42)
    live_ops = {42}

    def alive(kind: TimerKind, ref: int) -> bool:
        return ref in (reqs if kind is TimerKind.REQUEST else live_ops)

    assert timers.next_deadline(alive) == 2.0  # op 41 is gone: its entry is dropped
    fired = []
    for kind, ref in timers.due(3.0):
        fired.append((kind, ref))
        if ref == 42:
            timers.arm(2.5, TimerKind.OPERATION, 43)  # armed while firing, already due
    assert fired == [
        (TimerKind.OPERATION, 42),
        (TimerKind.OPERATION, 43),
        (TimerKind.REQUEST, rid),
    ]
    assert timers.next_deadline(alive) is None
