"""Listen (``node.listen``, ``node.listening``): holders push new versions to live listeners only;
a listener reports each newer version once, in order. Wire messages round-trip the codec."""

from __future__ import annotations

import random

from node import codec
from node.config import Config
from node.events import RecordUpdated
from node.identity import Identity
from node.ids import NodeId, key_id
from node.messages import FindNode, Listen, ListenAck, Nodes, Notify, Store
from node.protocol import DhtProtocol
from node.records import Record, sign_record

WALL_S = 1_700_000_000.0
KEY = key_id("watched")


def proto(seed: int) -> DhtProtocol:
    ident = Identity.generate(random.Random(seed))
    return DhtProtocol(ident, Config(), random.Random(seed), 0.0, wall_offset_s=WALL_S)


def version(author: DhtProtocol, data: bytes, ts_ms: int) -> Record:
    return sign_record(author.identity, KEY, data, int(WALL_S * 1000) + ts_ms)


def sent(p: DhtProtocol, kind: type) -> list[tuple[NodeId, object]]:
    return [(o.peer, o.message) for o in p.messages_to_send() if isinstance(o.message, kind)]


def updates(p: DhtProtocol) -> list[bytes]:
    out = []
    while (ev := p.next_event()) is not None:
        if isinstance(ev, RecordUpdated):
            out.append(ev.record.data)
    return out


def test_holder_pushes_to_live_listeners_until_the_registration_expires() -> None:
    holder, listener, writer = proto(1), proto(2), proto(3)
    holder.receive(listener.id, Listen(5, KEY, 10), 0.0)
    assert [m for _, m in sent(holder, ListenAck)] == [ListenAck(5, True, 10)]
    holder.receive(writer.id, Store(6, version(writer, b"v1", 0), False), 1.0)
    pushes = sent(holder, Notify)
    assert [(peer, m.record.data) for peer, m in pushes] == [(listener.id, b"v1")]  # type: ignore[attr-defined]
    # The listener died: nobody refreshes; after its 10 s nothing more is pushed.
    holder.receive(writer.id, Store(7, version(writer, b"v2", 20_000), False), 10.5)
    assert sent(holder, Notify) == []


def test_a_holder_caps_the_lifetime_and_ttl_zero_removes() -> None:
    holder, listener = proto(1), proto(2)
    holder.receive(listener.id, Listen(5, KEY, 3600), 0.0)
    assert [m for _, m in sent(holder, ListenAck)] == [ListenAck(5, True, 600)]
    holder.receive(listener.id, Listen(6, KEY, 0), 1.0)
    assert holder.listening.table.listeners(KEY, 1.0) == []


def test_listener_reports_each_newer_version_once_and_in_order() -> None:
    listener, h1, h2, writer = proto(2), proto(4), proto(5), proto(3)
    assert listener.listen(KEY, 0.0)
    v1, v2, v3 = (version(writer, d, t) for d, t in ((b"v1", 0), (b"v2", 5), (b"v3", 9)))
    listener.receive(h1.id, Notify(v1), 1.0)
    listener.receive(h2.id, Notify(v1), 1.0)  # the same version from another holder
    listener.receive(h1.id, Notify(v3), 1.1)
    listener.receive(h2.id, Notify(v2), 1.1)  # older than the last one reported
    assert updates(listener) == [b"v1", b"v3"]
    forged = Record(KEY, b"forged", v3.ts + 1, v3.public_key, v3.sig)
    listener.receive(h1.id, Notify(forged), 1.2)
    other = sign_record(writer.identity, key_id("other"), b"x", v3.ts)
    listener.receive(h1.id, Notify(other), 1.2)  # a key we do not listen to
    assert updates(listener) == []
    assert listener.unlisten(KEY, 2.0)
    listener.receive(h1.id, Notify(version(writer, b"v4", 20)), 2.1)
    assert updates(listener) == []


def test_listener_registers_with_the_closest_and_refreshes_at_half_the_ttl() -> None:
    listener = proto(2)
    holders = [proto(10 + i) for i in range(3)]
    for h in holders:
        listener.add_contact(h.id, 0.0)
    listener.listen(KEY, 0.0)
    # The lookup asks each contact; answer with no closer nodes so it ends.
    for peer, msg in [(o.peer, o.message) for o in listener.messages_to_send()]:
        listener.receive(peer, codec.decode(codec.encode(_nodes_reply(msg))), 0.1)
    regs = sent(listener, Listen)
    assert sorted(peer for peer, _ in regs) == sorted(h.id for h in holders)
    assert {m.ttl_s for _, m in regs} == {60}  # type: ignore[attr-defined]
    assert listener.get_timer() is not None
    listener.handle_timer(30.0)  # half of listen_ttl_s: a new lookup starts
    assert len(listener.messages_to_send()) >= len(holders)


def _nodes_reply(msg: object) -> Nodes:
    assert isinstance(msg, FindNode)
    return Nodes(msg.rid, ())


def test_listen_messages_round_trip_the_codec() -> None:
    writer = proto(3)
    for m in (Listen(1, KEY, 60), ListenAck(2, True, 60), Notify(version(writer, b"v", 0))):
        assert codec.decode(codec.encode(m)) == m
