"""Topic discovery in the simulator: announce, get_peers, leave, expiry, continuous discovery."""

from __future__ import annotations

from collections import Counter

import pytest

from node.events import GetPeersResult, TopicPeerFound, TopicPeerLost
from node.ids import NodeId, key_id
from node.sim.cluster import SimCluster, SimNode, sim_config

pytestmark = pytest.mark.timeout(120)

TOPIC = key_id("chat-room")
TTL_S = 120.0


def lookup(c: SimCluster, node: SimNode) -> GetPeersResult:
    res = c.run_op(node, lambda p, now: p.get_peers(TOPIC, now))
    assert isinstance(res, GetPeersResult)
    return res


def test_topic_discovery_lifecycle(sim_seed: int) -> None:
    config = sim_config(provider_ttl_s=TTL_S, reannounce_interval_s=30.0, discovery_interval_s=5.0)
    c = SimCluster(seed=sim_seed, config=config)
    c.bootstrap(200)
    nodes = c.alive()
    announcers = c.rng.sample(nodes, 10)
    others = [n for n in nodes if n not in announcers]
    observers = c.rng.sample(others, 5)
    for i, a in enumerate(announcers):
        a.proto.join_topic(TOPIC, 7000 + i, b'{"i": %d}' % i, c.sched.now)
        c._pump(a)
    for o in observers:
        o.proto.join_topic(TOPIC, None, b"", c.sched.now)
        c._pump(o)
    c.run_for(20.0)

    everyone = {a.id for a in announcers}
    for node in c.rng.sample(nodes, 25):
        res = lookup(c, node)
        assert {p.node for p in res.providers} == everyone
        assert len(res.providers) == 10  # deduplicated by announcer
        assert res.left == ()
    ports = {p.node: p.port for p in lookup(c, observers[0]).providers}
    assert ports == {a.id: 7000 + i for i, a in enumerate(announcers)}

    # Two leave with a signed tombstone, one dies silently.
    leavers, dead = announcers[:2], announcers[2]
    for a in leavers:
        assert a.proto.leave_topic(TOPIC, c.sched.now) is not None
        c._pump(a)
    c.kill(dead.id)
    remaining = {a.id for a in announcers[3:]}
    c.run_for(10.0)
    res = lookup(c, c.rng.choice(others))
    assert {p.node for p in res.providers} == remaining | {dead.id}
    assert set(res.left) == {a.id for a in leavers}

    # Past one TTL: the dead node's record expired; the active announcers kept theirs alive.
    c.run_for(TTL_S + 30.0)
    for node in c.rng.sample([n for n in c.alive()], 25):
        res = lookup(c, node)
        assert {p.node for p in res.providers} == remaining
    c.run_for(TTL_S)  # a second TTL: re-announcing keeps going
    assert {p.node for p in lookup(c, c.rng.choice(others)).providers} == remaining

    # Continuous discovery: one TopicPeerFound per announcer, TopicPeerLost for the three.
    for o in observers:
        found = Counter(e.provider.node for e in o.events if isinstance(e, TopicPeerFound))
        assert found == Counter({a.id: 1 for a in announcers})
        lost = {e.peer: e.reason for e in o.events if isinstance(e, TopicPeerLost)}
        expected: dict[NodeId, str] = {a.id: "left" for a in leavers}
        expected[dead.id] = "expired"
        assert lost == expected
    # Announcers discover each other, never themselves.
    a = announcers[5]
    found = Counter(e.provider.node for e in a.events if isinstance(e, TopicPeerFound))
    assert found == Counter({x.id: 1 for x in announcers if x is not a})
