"""Joined topics: keep announcing ourselves and keep discovering the other providers.

A node *joins* a topic passively (discover only) or actively (also announce a provider record
with an application port). For every joined topic:

- an active join re-announces (signed, fresh ``ts``) every ``reannounce_interval_s``, well inside
  the provider TTL, through the node's one write path;
- a GET_PEERS lookup runs every ``discovery_interval_s``, one at a time per topic; its result is
  diffed against the providers known so far: ``TopicPeerFound`` for each new announcer,
  ``TopicPeerLost`` for one that left (a signed leave tombstone) or whose announcement expired.

``Topics`` keeps no clock: ``due(now)`` runs what is due and ``deadlines()`` says when next.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from node.config import Config
from node.events import GetPeersResult, TopicPeerFound, TopicPeerLost
from node.identity import Identity
from node.ids import NodeId
from node.operations import OpHost, OpKind, Purpose
from node.records import ProviderRecord, sign_provider


class LossReason(enum.StrEnum):
    """Why a provider was lost (``events.TopicPeerLost.reason``)."""

    LEFT = "left"  # it withdrew with a signed leave tombstone
    EXPIRED = "expired"  # its announcement was not renewed within the provider TTL


@dataclass(slots=True)
class JoinedTopic:
    topic: bytes
    port: int | None
    meta: bytes
    known: dict[NodeId, ProviderRecord] = field(default_factory=dict)
    next_announce: float = 0.0
    next_discovery: float = 0.0
    discovering: bool = False

    @property
    def announcing(self) -> bool:
        return self.port is not None


class Topics:
    def __init__(self, identity: Identity, config: Config, host: OpHost) -> None:
        self.identity = identity
        self.config = config
        self.host = host
        self.joined: dict[bytes, JoinedTopic] = {}
        self.changed: set[bytes] | None = None
        """Topics joined, changed or left since the last persisted batch (None: not persisted)."""

    def join(
        self, topic: bytes, port: int | None, meta: bytes, now: float, announce_now: bool
    ) -> None:
        jt = self.joined.get(topic)
        if jt is None:
            jt = self.joined[topic] = JoinedTopic(topic, port, meta)
        else:
            jt.port, jt.meta = port, meta
        if self.changed is not None:
            self.changed.add(topic)
        jt.next_announce = now if announce_now else now + self.config.reannounce_interval_s
        jt.next_discovery = now
        self.due(now)

    def restore(self, topic: bytes, port: int | None, meta: bytes, at: float) -> None:
        """A topic a previous run had joined: announce and discover it again from ``at`` (once
        the node is back in the network; its old announcement lives until the provider TTL)."""
        jt = self.joined[topic] = JoinedTopic(topic, port, meta)
        jt.next_announce = jt.next_discovery = at

    def leave(self, topic: bytes) -> JoinedTopic | None:
        if self.changed is not None:
            self.changed.add(topic)
        return self.joined.pop(topic, None)

    def next_deadline(self) -> float:
        """When ``due`` has work next (infinity when no topic is joined)."""
        t = math.inf
        if not self.joined:
            return t
        for jt in self.joined.values():
            if not jt.discovering:
                t = min(t, jt.next_discovery)
            if jt.announcing:
                t = min(t, jt.next_announce)
        return t

    def due(self, now: float) -> None:
        for jt in list(self.joined.values()):
            if jt.announcing and now >= jt.next_announce:
                jt.next_announce = now + self.config.reannounce_interval_s
                wall = self.host.wall_ms(now)
                provider = sign_provider(self.identity, jt.topic, wall, jt.port or 0, jt.meta)
                self.host.write(provider, now, Purpose.REPUBLISH)
            if not jt.discovering and now >= jt.next_discovery:
                jt.discovering = True
                self.host.lookup(OpKind.GET_PEERS, jt.topic, now, Purpose.DISCOVERY)

    def discovered(self, topic: bytes, result: GetPeersResult, now: float) -> None:
        """A discovery lookup (``Purpose.DISCOVERY``) ended: diff its providers."""
        jt = self.joined.get(topic)
        if jt is None:
            return
        jt.discovering = False
        jt.next_discovery = now + self.config.discovery_interval_s
        found = {p.node: p for p in result.providers if p.node != self.identity.node_id}
        for node_id, p in found.items():
            cur = jt.known.get(node_id)
            jt.known[node_id] = p
            if cur is None:
                self.host.emit(TopicPeerFound(topic, p))
        wall = self.host.wall_ms(now)
        ttl_ms = int(self.config.provider_ttl_s * 1000)
        for node_id in list(jt.known):
            if node_id in found:
                continue
            if node_id in result.left:
                del jt.known[node_id]
                self.host.emit(TopicPeerLost(topic, node_id, LossReason.LEFT))
            elif jt.known[node_id].ts + ttl_ms <= wall:
                del jt.known[node_id]
                self.host.emit(TopicPeerLost(topic, node_id, LossReason.EXPIRED))
