"""Notices: each published event names its topic and builds a msgpack-encodable payload."""

from __future__ import annotations

import msgpack

from node import events
from node.identity import Identity
from node.ids import key_id
from node.records import sign_provider, sign_record

ME = Identity.generate()
PEER = Identity.generate().node_id
KEY = key_id("named")
TOPIC = key_id("chat")


class Names:
    def key_name(self, key: bytes) -> str | None:
        return "named" if key == KEY else None

    def topic_name(self, topic: bytes) -> str | None:
        return "chat" if topic == TOPIC else None


def every_notice() -> list[events.Notice]:
    record = sign_record(ME, KEY, b"v", 1_700_000_000_000)
    provider = sign_provider(ME, TOPIC, 1_700_000_000_000, 80, b'{"a":1}')
    return [
        events.LookupDone("find_node", PEER, 2, 0.0125, True, 5, 1),
        events.RecordStored(record, cached=False, local=True, source=None),
        events.RecordExpired(KEY, PEER, cached=True),
        events.MaintenanceRefresh(3),
        events.MaintenanceRepublish(4),
        events.MaintenanceRepair(5, 1),
        events.TopicPeerFound(TOPIC, provider),
        events.TopicPeerLost(key_id("other"), PEER, "left"),
        events.PeerConnected(PEER),
        events.PeerDisconnected(PEER, "unresponsive"),
        events.PeerBanned(PEER, "far over its request rate for too long (ban 1)", 60.0),
    ]


def test_every_notice_has_its_own_topic_and_an_encodable_payload() -> None:
    notices = every_notice()
    topics = [n.TOPIC for n in notices]
    assert topics == [
        "lookup.done",
        "record.stored",
        "record.expired",
        "maintenance.refresh",
        "maintenance.republish",
        "maintenance.repair",
        "topic.peer",
        "topic.peer_lost",
        "peer.connected",
        "peer.disconnected",
        "peer.banned",
    ]
    for n in notices:
        assert isinstance(msgpack.unpackb(msgpack.packb(n.payload(Names()))), dict)


def test_payloads_carry_names_hex_ids_and_milliseconds() -> None:
    lookup, stored, expired, refresh, _, repair, found, lost, up, down, ban = every_notice()
    names = Names()
    assert lookup.payload(names) == {
        "kind": "find_node",
        "target": PEER.hex(),
        "hops": 2,
        "duration_ms": 12.5,
        "found": True,
        "contacted": 5,
        "failed": 1,
    }
    assert stored.payload(names)["key"] == "named"
    assert stored.payload(names)["origin"] == "local"
    assert expired.payload(names) == {"key_id": KEY.hex(), "publisher": PEER.hex(), "cached": True}
    assert refresh.payload(names) == {"buckets": 3}
    assert repair.payload(names) == {"keys_checked": 5, "replicas_restored": 1}
    assert found.payload(names) == {
        "topic": "chat",
        "topic_id": TOPIC.hex(),
        "peer": ME.node_id.hex(),
        "port": 80,
        "meta": {"a": 1},
    }
    assert lost.payload(names)["topic"] == key_id("other").hex()  # unknown name: the id
    assert up.payload(names) == {"peer": PEER.hex()}
    assert down.payload(names) == {"peer": PEER.hex(), "reason": "unresponsive"}
    assert ban.payload(names) == {
        "peer": PEER.hex(),
        "reason": "far over its request rate for too long (ban 1)",
        "for_s": 60.0,
    }


def test_stats_payload_reports_latency_percentiles() -> None:
    stats = events.NodeStats(
        ME.node_id, 1.23456, {"PING": 1}, {}, 2, (0.01, 0.02, 0.03), 0, 0, 1, 1,
        0, 0, 0, 0, 1, 1, 0, 0, True, 0,
    )  # fmt: skip
    body = stats.payload(Names())
    assert body["uptime_s"] == 1.235
    assert body["lookup_latency_ms"] == {"p50": 20.0, "p90": 30.0, "p99": 30.0}
    assert body["id"] == ME.node_id.hex()
    assert events.percentiles([], (50,)) == {"p50": None}
