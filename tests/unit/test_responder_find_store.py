"""FIND_NODE_STORE at the receiver: answer like FIND_NODE; store only when among the k closest."""

from __future__ import annotations

import random

from node import messages as wire
from node.config import Config
from node.identity import Identity
from node.ids import NodeId, as_int, random_id
from node.records import sign_record
from node.responder import Responder
from node.routing import RoutingTable
from node.storage import ProviderStore, RecordStore

RNG = random.Random(11)
ME = Identity.generate(RNG)
WRITER = Identity.generate(RNG)
CONFIG = Config(k=4)
WALL_MS = 1_700_000_000_000


def responder(contacts: list[NodeId]) -> Responder:
    table = RoutingTable(ME.node_id, CONFIG.k, 0.0)
    for c in contacts:
        table.update(c, 0.0)
    records = RecordStore(CONFIG.record_ttl_s, CONFIG.cache_ttl_s, CONFIG.max_records)
    return Responder(CONFIG, table, records, ProviderStore(CONFIG.provider_ttl_s, 64))


def key_near(node: NodeId) -> bytes:
    """A key whose XOR distance to ``node`` is tiny (last byte flipped)."""
    return bytes(node[:-1]) + bytes([node[-1] ^ 1])


def test_far_receiver_answers_nodes_and_declines() -> None:
    contacts = [random_id(RNG) for _ in range(12)]
    r = responder(contacts)
    key = key_near(contacts[0])
    t = as_int(key)
    known = r.table.closest(key, len(contacts))
    assert len([c for c in known if as_int(c) ^ t < as_int(ME.node_id) ^ t]) >= CONFIG.k
    rec = sign_record(WRITER, key, b"v", WALL_MS)
    reply = r.answer(WRITER.node_id, wire.FindNodeStore(5, NodeId(key), rec), 1.0, WALL_MS)
    ack = reply.response
    assert isinstance(ack, wire.NodesAck)
    assert (ack.rid, ack.ok, ack.reason) == (5, False, wire.NOT_CLOSEST)
    assert ack.nodes == tuple(r.table.closest(key, CONFIG.k, exclude=WRITER.node_id))
    assert r.records.get(key, 1.0) is None
    assert reply.stored is None
    assert not reply.rejected


def test_close_receiver_stores_and_acks_like_store() -> None:
    contacts = [random_id(RNG) for _ in range(12)]
    r = responder(contacts)
    key = key_near(ME.node_id)  # we are the closest node of all
    rec = sign_record(WRITER, key, b"v", WALL_MS)
    reply = r.answer(WRITER.node_id, wire.FindNodeStore(6, NodeId(key), rec), 1.0, WALL_MS)
    ack = reply.response
    assert isinstance(ack, wire.NodesAck)
    assert (ack.ok, ack.reason, len(ack.nodes)) == (True, "stored", CONFIG.k)
    assert r.records.get(key, 1.0) == rec
    assert reply.stored is not None
    again = r.answer(WRITER.node_id, wire.FindNodeStore(7, NodeId(key), rec), 2.0, WALL_MS)
    assert isinstance(again.response, wire.NodesAck)
    assert (again.response.ok, again.response.reason) == (True, "refreshed")


def test_bad_or_mismatched_records_are_refused() -> None:
    r = responder([])
    key = key_near(ME.node_id)
    rec = sign_record(WRITER, key, b"v", WALL_MS)
    other = sign_record(WRITER, random_id(RNG), b"v", WALL_MS)
    forged = sign_record(WRITER, key, b"v", WALL_MS)
    forged = type(forged)(forged.key, b"forged", forged.ts, forged.public_key, forged.sig)
    for i, bad in enumerate((other, forged)):
        reply = r.answer(WRITER.node_id, wire.FindNodeStore(i, NodeId(key), bad), 1.0, WALL_MS)
        assert isinstance(reply.response, wire.NodesAck)
        assert not reply.response.ok
        assert reply.response.reason != wire.NOT_CLOSEST
        assert reply.rejected
    assert r.records.get(key, 1.0) is None
    assert r.answer(WRITER.node_id, wire.FindNodeStore(9, NodeId(key), rec), 1.0, WALL_MS).stored
