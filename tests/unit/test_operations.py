"""Typed operation state (``node.operations``): requests per kind, answers, results, quorum."""

from __future__ import annotations

import json
import random

from node.config import Config
from node.events import AnnounceResult, FindNodeResult, GetResult, StoreResult
from node.identity import Identity
from node.ids import NodeId, as_int, random_id
from node.lookup import LookupIter
from node.messages import (
    Announce,
    AnnounceAck,
    FindNode,
    FindValue,
    GetPeers,
    Nodes,
    Store,
    StoreAck,
    Value,
)
from node.operations import Answer, LookupOp, OpKind, OpTable, Purpose, WriteOp
from node.records import sign_provider, sign_record

RNG = random.Random(3)
ME = Identity.generate(RNG)
PEERS = [random_id(RNG) for _ in range(6)]
KEY = random_id(RNG)
WALL_MS = 1_700_000_000_000
CONFIG = Config(k=4, alpha=2)


def lookup(kind: OpKind) -> LookupOp:
    it = LookupIter(KEY, ME.node_id, PEERS, CONFIG.k, CONFIG.alpha)
    return LookupOp(op_id=1, started=10.0, kind=kind, target=KEY, it=it, deadline=20.0)


def test_kinds_are_strings_and_only_user_and_join_operations_report() -> None:
    assert OpKind.FIND_NODE in {"find_node"}  # equal to (and hashed as) its string
    assert json.dumps({"kind": OpKind.FIND_VALUE}) == '{"kind": "find_value"}'
    assert f"{OpKind.GET_PEERS}" == "get_peers"
    assert [p for p in Purpose if not p.internal] == [Purpose.USER, Purpose.JOIN]


def test_each_lookup_kind_sends_its_own_request() -> None:
    assert lookup(OpKind.FIND_NODE).request(5) == FindNode(5, NodeId(KEY))
    assert lookup(OpKind.FIND_VALUE).request(6) == FindValue(6, KEY)
    assert lookup(OpKind.GET_PEERS).request(7) == GetPeers(7, KEY)


def test_find_value_keeps_the_best_valid_record_and_caches_at_the_closest_lacking() -> None:
    op = lookup(OpKind.FIND_VALUE)
    asked = [c.id for c in iter(op.it.next_peer, None)]
    assert len(asked) == CONFIG.alpha
    a, b = asked
    good = sign_record(ME, KEY, b"v", WALL_MS)
    wrong_key = sign_record(ME, bytes(32), b"v", WALL_MS)
    assert op.on_response(a, Value(1, wrong_key, ()), WALL_MS, CONFIG) is Answer.REJECTED
    assert op.on_response(b, Value(2, good, ()), WALL_MS, CONFIG) is Answer.VALUE_FOUND
    assert (op.best, op.best_from) == (good, b)
    assert op.settled
    assert op.done
    assert op.cache_target() == a  # it answered without a valid copy
    done = op.summary(12.5)
    assert (done.kind, done.found, done.duration_s, done.contacted) == ("find_value", True, 2.5, 2)
    res = op.result(done)
    assert isinstance(res, GetResult)
    assert (res.record, res.local) == (good, False)


def test_find_node_collects_the_closest_that_answered() -> None:
    op = lookup(OpKind.FIND_NODE)
    while (c := op.it.next_peer()) is not None or op.it.in_flight:
        if c is not None:
            assert op.on_response(c.id, Nodes(0, ()), WALL_MS, CONFIG) is Answer.PROGRESS
    assert op.done
    res = op.result(op.summary(11.0))
    assert isinstance(res, FindNodeResult)
    t = as_int(KEY)
    assert list(res.closest) == sorted(PEERS, key=lambda p: as_int(p) ^ t)[: CONFIG.k]
    assert op.cache_target() is None


def test_one_write_path_for_records_and_providers() -> None:
    record = sign_record(ME, KEY, b"v", WALL_MS)
    provider = sign_provider(ME, KEY, WALL_MS, 7000, b"")
    store = WriteOp(op_id=2, started=1.0, payload=record)
    announce = WriteOp(op_id=3, started=1.0, payload=provider)
    assert store.request(8) == Store(8, record, False)
    assert announce.request(9) == Announce(9, provider)
    for op, ack in ((store, StoreAck), (announce, AnnounceAck)):
        op.begin(PEERS[:5], Config(k=4, write_quorum=3))
        assert (op.targets, op.quorum) == (PEERS[:4], 2)  # k caps targets; quorum ceil(4/2)
        op.on_answer(ack(0, False, "stale"))
        op.on_failure()
        assert not op.settled
        op.on_answer(ack(0, True, "stored"))
        assert not op.settled
        op.on_answer(ack(0, True, "stored"))
        assert op.settled
    s = store.result(3.0)
    assert s == StoreResult(KEY, True, 2, 4, 2, 2.0, record, ("stale", "timeout"))
    a = announce.result(3.0)
    assert a == AnnounceResult(KEY, True, 2, 4, 2, False, 2.0)


def test_a_write_to_nobody_is_settled_and_succeeds_with_quorum_zero() -> None:
    op = WriteOp(op_id=1, started=0.0, payload=sign_record(ME, KEY, b"v", WALL_MS))
    op.begin([], CONFIG)
    assert op.settled
    res = op.result(0.0)
    assert isinstance(res, StoreResult)
    assert (res.ok, res.acks, res.attempts, res.quorum) == (True, 0, 0, 0)


def test_op_ids_count_up_and_are_never_reused() -> None:
    ops = OpTable()
    first = WriteOp(op_id=ops.new_id(), started=0.0, payload=sign_record(ME, KEY, b"", 1))
    ops.add(first)
    assert ops.get(first.op_id) is first
    assert ops.get(None) is None
    assert ops.pop(first.op_id) is first
    assert ops.pop(first.op_id) is None
    assert ops.new_id() == first.op_id + 1
    assert len(ops) == 0
