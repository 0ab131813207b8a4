"""``DhtProtocol`` under bad input: unexpected, malformed and forged messages and records."""

from __future__ import annotations

import dataclasses

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from node import codec
from node.events import (
    ContactRemoved,
    GetResult,
    PeerBanned,
    PeerMisbehaved,
    PingResult,
    StoreResult,
)
from node.ids import NodeId, key_id
from node.messages import (
    FindNode,
    FindValue,
    Message,
    Nodes,
    Ping,
    Pong,
    Store,
    StoreAck,
    Value,
)
from node.protocol import DhtProtocol
from node.records import sign_record
from tests.support.protocol_net import Net, cfg, holds

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


def test_a_peer_flooding_far_over_its_rate_is_banned_then_heard_again_after_the_ban() -> None:
    net = Net(2, dataclasses.replace(cfg(), request_rate_per_peer=50, request_burst_per_peer=20,
                                     ban_s=30.0))  # fmt: skip
    a, b = net.nodes
    net.meet(a, b, connected=True)
    flood = [codec.encode(FindNode(i + 1, NodeId(key_id(f"x{i}")))) for i in range(400)]
    for i, data in enumerate(flood):  # 2,000 requests/s
        a.receive(b.id, data, net.now + i / 2000)
    net.now += 0.2
    evs = []
    while (ev := a.next_event()) is not None:
        evs.append(ev)
    banned = [e for e in evs if isinstance(e, PeerBanned)]
    assert len(banned) == 1
    assert banned[0].peer == b.id
    assert banned[0].for_s == 30.0
    assert ContactRemoved(b.id, "banned") in evs
    assert b.id not in a.table
    assert a.stats.peers_banned == 1
    served = a.stats.messages_in["FIND_NODE"]
    assert served <= 20 + 50 * 0.2 + 3  # the burst, the rate, a few refusals answered
    # Banned: nothing it sends is read, and hearing from it does not put it back in the table.
    a.messages_to_send()
    a.receive(b.id, codec.encode(Ping(9999)), net.now + 1)
    assert a.messages_to_send() == []
    assert b.id not in a.table
    # After the ban it is an ordinary peer again.
    a.receive(b.id, codec.encode(Ping(10000)), net.now + 31)
    out = a.messages_to_send()
    assert [o.message for o in out] == [Pong(10000)]
    assert b.id in a.table
    # Flooding again earns a ban twice as long.
    t0 = net.now + 40
    for i, data in enumerate(flood):
        a.receive(b.id, data, t0 + i / 2000)
    again = [e for e in iter(a.next_event, None) if isinstance(e, PeerBanned)]
    assert [e.for_s for e in again] == [60.0]
    assert a.stats.peers_banned == 2
