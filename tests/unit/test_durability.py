"""Durable acknowledgements (``node.durability``) and the SQLite store (``node.persist``).

The core holds a STORE_ACK until the batch holding its record is reported committed; the
SQLite store round-trips every row and drops expired ones on load.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from node.config import Config
from node.identity import Identity
from node.ids import NodeId, key_id
from node.messages import Announce, AnnounceAck, Store, StoreAck
from node.persist import SqliteStore
from node.protocol import DhtProtocol
from node.records import sign_provider, sign_record

WALL_S = 1_700_000_000.0


def proto(identity: Identity | None = None) -> DhtProtocol:
    ident = identity or Identity.generate(random.Random(1))
    return DhtProtocol(ident, Config(), random.Random(2), 0.0, wall_offset_s=WALL_S)


def store_msg(author: Identity, name: str, data: bytes, rid: int = 7) -> Store:
    return Store(rid, sign_record(author, key_id(name), data, int(WALL_S * 1000)), False)


def test_store_ack_is_held_until_its_batch_is_committed() -> None:
    p = proto()
    p.persistent(None, 0.0)
    author = Identity.generate(random.Random(3))
    peer = NodeId(author.node_id)
    p.receive(peer, store_msg(author, "a", b"1"), 1.0)
    assert [o for o in p.messages_to_send() if isinstance(o.message, StoreAck)] == []
    batch = p.take_batch(1.0)
    assert [r.key for r in batch.records] == [key_id("a")]
    # A second STORE arrives while the first batch is being committed: it waits for the next.
    p.receive(peer, store_msg(author, "b", b"2", rid=8), 1.1)
    p.persisted(batch.gen)
    acks = [o.message for o in p.messages_to_send() if isinstance(o.message, StoreAck)]
    assert [(a.rid, a.ok) for a in acks] == [(7, True)]
    second = p.take_batch(1.2)
    assert [r.key for r in second.records] == [key_id("b")]
    p.persisted(second.gen)
    acks = [o.message for o in p.messages_to_send() if isinstance(o.message, StoreAck)]
    assert [(a.rid, a.ok) for a in acks] == [(8, True)]


def test_refused_store_is_answered_at_once_and_without_persistence_nothing_is_held() -> None:
    p = proto()
    p.persistent(None, 0.0)
    author = Identity.generate(random.Random(3))
    good = store_msg(author, "a", b"1")
    forged = Store(9, dataclasses.replace(good.record, data=b"x"), False)  # signature broken
    p.receive(NodeId(author.node_id), forged, 1.0)
    acks = [o.message for o in p.messages_to_send() if isinstance(o.message, StoreAck)]
    assert [(a.rid, a.ok) for a in acks] == [(9, False)]
    plain = proto()
    plain.receive(NodeId(author.node_id), store_msg(author, "a", b"1"), 1.0)
    acks = [o.message for o in plain.messages_to_send() if isinstance(o.message, StoreAck)]
    assert [(a.rid, a.ok) for a in acks] == [(7, True)]


def test_sqlite_round_trip_restores_records_providers_authored_and_drops_expired(
    tmp_path: Path,
) -> None:
    me = Identity.generate(random.Random(1))
    other = Identity.generate(random.Random(3))
    p = proto(me)
    p.persistent(None, 0.0)
    p.receive(NodeId(other.node_id), store_msg(other, "theirs", b"t"), 1.0)
    p.store(key_id("mine"), b"m", 1.0)
    prov = sign_provider(other, key_id("topic"), int(WALL_S * 1000), 4000, b"", False)
    p.receive(NodeId(other.node_id), Announce(11, prov), 1.0)
    db = SqliteStore(tmp_path / "dht.sqlite3")
    db.commit(p.take_batch(1.0))
    p.persisted(1)
    assert any(isinstance(o.message, AnnounceAck) for o in p.messages_to_send())
    db.close()

    later = WALL_S + 60.0
    db = SqliteStore(tmp_path / "dht.sqlite3")
    snap = db.load(int(later * 1000))
    restarted = DhtProtocol(me, Config(), random.Random(5), 0.0, wall_offset_s=later)
    restarted.persistent(snap, 0.0)
    assert restarted.records.get(key_id("theirs"), 0.0) == p.records.get(key_id("theirs"), 1.0)
    assert restarted.records.get(key_id("mine"), 0.0) is not None
    assert list(restarted.authored) == [key_id("mine")]
    assert restarted.providers.get(key_id("topic"), 0.0) == [prov]
    # Expiry keeps counting across the restart (wall clock): 60 s of the TTL are gone.
    e = restarted.records.entry(key_id("theirs"), 0.0)
    assert e is not None
    assert abs(e.expires_at - (Config().record_ttl_s - 59.0)) < 0.01
    db.close()

    after_ttl = WALL_S + Config().record_ttl_s + 10.0
    db = SqliteStore(tmp_path / "dht.sqlite3")
    snap = db.load(int(after_ttl * 1000))
    assert snap.records == []
    assert snap.providers == []
    assert len(snap.authored) == 1  # still ours to republish
    db.close()


def test_joined_topics_survive_a_restart_and_are_announced_again(tmp_path: Path) -> None:
    me = Identity.generate(random.Random(1))
    p = proto(me)
    p.persistent(None, 0.0)
    p.join_topic(key_id("chat"), 4000, b'{"v":1}', 1.0)  # active: announced
    p.join_topic(key_id("lurk"), None, b"", 1.0)  # passive: discovery only
    p.join_topic(key_id("gone"), 5000, b"", 1.0)
    p.leave_topic(key_id("gone"), 2.0)
    db = SqliteStore(tmp_path / "dht.sqlite3")
    db.commit(p.take_batch(2.0))
    db.close()

    db = SqliteStore(tmp_path / "dht.sqlite3")
    restarted = DhtProtocol(me, Config(), random.Random(5), 0.0, wall_offset_s=WALL_S + 30)
    restarted.persistent(db.load(int((WALL_S + 30) * 1000)), 0.0)
    db.close()
    joined = restarted.joined
    assert sorted(joined) == sorted([key_id("chat"), key_id("lurk")])
    assert (joined[key_id("chat")].port, joined[key_id("chat")].meta) == (4000, b'{"v":1}')
    assert joined[key_id("lurk")].port is None
    # Not at once (the node is not back in the network yet), but soon.
    assert restarted.messages_to_send() == []
    assert restarted.topics.next_deadline() == 5.0
    assert restarted.take_batch(0.0).joined == []  # restoring is not a change to write back
    restarted.add_contact(NodeId(Identity.generate(random.Random(9)).node_id), 0.0)
    restarted.messages_to_send()
    restarted.handle_timer(5.0)
    sent = {type(o.message).__name__ for o in restarted.messages_to_send()}
    assert {"GetPeers", "FindNode"} <= sent  # discovery of both, the announcement of "chat"
