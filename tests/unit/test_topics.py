"""Joined topics (``node.topics``) driven through a recording host: no network, ``now`` by hand."""

from __future__ import annotations

import math
import random

from node.config import Config
from node.events import Event, GetPeersResult, TopicPeerFound, TopicPeerLost
from node.identity import Identity
from node.ids import NodeId, random_id
from node.messages import Request
from node.operations import OpKind, Purpose
from node.records import ProviderRecord, Record, sign_provider
from node.topics import Topics

RNG = random.Random(5)
ME, ALICE, BOB = (Identity.generate(RNG) for _ in range(3))
TOPIC = random_id(RNG)
CONFIG = Config(reannounce_interval_s=300.0, discovery_interval_s=15.0, provider_ttl_s=1200.0)


class Host:
    def __init__(self) -> None:
        self.lookups: list[tuple[OpKind, bytes, float, Purpose]] = []
        self.writes: list[tuple[Record | ProviderRecord, float, Purpose]] = []
        self.events: list[Event] = []

    def wall_ms(self, now: float) -> int:
        return int(now * 1000)

    def lookup(
        self, kind: OpKind, target: bytes, now: float, purpose: Purpose, width: int | None = None
    ) -> int:
        self.lookups.append((kind, target, now, purpose))
        return len(self.lookups)

    def write(self, payload: Record | ProviderRecord, now: float, purpose: Purpose) -> int:
        self.writes.append((payload, now, purpose))
        return 100 + len(self.writes)

    def request(self, peer: NodeId, msg: Request, now: float) -> None:
        raise AssertionError("topics send no requests of their own")

    def new_rid(self) -> int:
        return 0

    def emit(self, event: Event) -> None:
        self.events.append(event)


def result(*providers: ProviderRecord, left: tuple[NodeId, ...] = ()) -> GetPeersResult:
    return GetPeersResult(TOPIC, providers, left, 1, 0.1, 3)


def test_active_join_announces_discovers_and_repeats_on_schedule() -> None:
    host = Host()
    topics = Topics(ME, CONFIG, host)
    topics.join(TOPIC, 7000, b"", now=0.0, announce_now=True)
    ((provider, _, purpose),) = host.writes
    assert isinstance(provider, ProviderRecord)
    assert (provider.topic, provider.port, provider.node, purpose) == (
        TOPIC, 7000, ME.node_id, Purpose.REPUBLISH,
    )  # fmt: skip
    assert host.lookups == [(OpKind.GET_PEERS, TOPIC, 0.0, Purpose.DISCOVERY)]
    # One discovery at a time: its deadline is not offered until it ends.
    assert topics.next_deadline() == 300.0
    topics.due(100.0)
    assert len(host.lookups) == 1
    topics.discovered(TOPIC, result(), 2.0)
    assert topics.next_deadline() == 17.0
    topics.due(300.0)
    assert len(host.writes) == 2
    assert len(host.lookups) == 2


def test_discovery_reports_new_left_and_expired_peers_but_never_ourselves() -> None:
    host = Host()
    topics = Topics(ME, CONFIG, host)
    topics.join(TOPIC, None, b"", now=0.0, announce_now=True)
    assert host.writes == []  # passive join: discover only
    a = sign_provider(ALICE, TOPIC, 1_000, 1, b"")
    b = sign_provider(BOB, TOPIC, 1_000, 2, b"")
    me = sign_provider(ME, TOPIC, 1_000, 3, b"")
    topics.discovered(TOPIC, result(a, b, me), 1.0)
    assert host.events == [TopicPeerFound(TOPIC, a), TopicPeerFound(TOPIC, b)]
    host.events.clear()
    topics.discovered(TOPIC, result(a, b), 2.0)
    assert host.events == []  # nothing new
    topics.discovered(TOPIC, result(left=(ALICE.node_id,)), 3.0)
    assert host.events == [TopicPeerLost(TOPIC, ALICE.node_id, "left")]
    host.events.clear()
    topics.discovered(TOPIC, result(), 1_000 + CONFIG.provider_ttl_s + 1)
    assert host.events == [TopicPeerLost(TOPIC, BOB.node_id, "expired")]


def test_leave_forgets_the_topic() -> None:
    host = Host()
    topics = Topics(ME, CONFIG, host)
    topics.join(TOPIC, 1, b"", now=0.0, announce_now=False)
    assert host.writes == []  # the caller just announced
    left = topics.leave(TOPIC)
    assert left is not None
    assert left.announcing
    assert topics.leave(TOPIC) is None
    assert topics.next_deadline() == math.inf
    topics.discovered(TOPIC, result(sign_provider(ALICE, TOPIC, 1, 1, b"")), 1.0)
    assert host.events == []
