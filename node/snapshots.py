"""Typed snapshots of a running node (peers, routing table, topics, counters) for its callers.

Pure functions of the core's state and ``now``: the runtime (``node.runtime``) calls them; the
control plane maps the dataclasses to its replies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from node.connections import ConnectionStats, PeerLink
from node.events import NodeStats
from node.ids import NodeId
from node.protocol import DhtProtocol
from node.routing import RoutingTable


@dataclass(frozen=True, slots=True)
class PeerInfo:
    id: NodeId
    rtt_s: float | None  # smoothed request/response time; None before the first answer
    connected_for_s: float
    in_routing_table: bool
    path: str | None = None  # host / srflx / relay (node.transport.ice_path); None: unknown


@dataclass(frozen=True, slots=True)
class ContactInfo:
    id: NodeId
    last_seen_s_ago: float


@dataclass(frozen=True, slots=True)
class BucketInfo:
    index: int
    contacts: tuple[ContactInfo, ...]
    replacements: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class RoutingSnapshot:
    size: int
    buckets: tuple[BucketInfo, ...]  # the non-empty ones, by index

    @property
    def buckets_used(self) -> int:
        return sum(1 for b in self.buckets if b.contacts)


@dataclass(frozen=True, slots=True)
class PingOutcome:
    peer: NodeId
    rtt_s: float
    total_s: float  # including the dial, when one was needed


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str  # the topic string when this node was given it, else the id in hex
    topic_id: bytes
    announcing: bool
    port: int | None
    peers_known: int


def peers(core: DhtProtocol, links: Iterable[PeerLink], now: float) -> tuple[PeerInfo, ...]:
    return tuple(
        PeerInfo(p.id, core.peer_rtt.get(p.id), now - p.connected_at, p.id in core.table, p.path)
        for p in links
    )


def routing(table: RoutingTable, now: float) -> RoutingSnapshot:
    return RoutingSnapshot(
        len(table),
        tuple(
            BucketInfo(
                i,
                tuple(ContactInfo(c.id, now - c.last_seen) for c in b.contacts),
                tuple(b.replacements),
            )
            for i, b in table.buckets()
        ),
    )


def topics(core: DhtProtocol, names: Mapping[bytes, str]) -> tuple[TopicInfo, ...]:
    """``names``: the topic strings this node was given (others are shown in hex)."""
    return tuple(
        TopicInfo(
            names.get(jt.topic, jt.topic.hex()),
            jt.topic,
            jt.announcing,
            jt.port or None,
            len(jt.known),
        )
        for jt in core.joined.values()
    )


def node_stats(
    node_id: NodeId,
    core: DhtProtocol,
    c: ConnectionStats,
    connections: int,
    *,
    uptime_s: float,
    signaling_connected: bool,
    links: Iterable[PeerLink] = (),
) -> NodeStats:
    s = core.stats
    return NodeStats(
        id=node_id,
        uptime_s=uptime_s,
        messages_in=dict(s.messages_in),
        messages_out=dict(s.messages_out),
        lookups=s.lookups,
        lookup_latencies_s=tuple(s.lookup_latencies_s),
        store_size=len(core.records),
        providers_held=core.providers.count(),
        connections=connections,
        routing_table_size=len(core.table),
        dropped_malformed=s.dropped_malformed,
        dropped_unexpected=s.dropped_unexpected,
        requests_failed=s.requests_failed,
        records_rejected=s.records_rejected,
        dials_started=c.dials_started,
        links_opened=c.links_opened,
        dials_failed=c.dials_failed,
        hellos_rejected=c.hellos_rejected,
        hellos_bad_version=c.hellos_bad_version,
        signaling_connected=signaling_connected,
        topics_joined=len(core.joined),
        store_bytes=core.records.bytes_used,
        refused=tuple(sorted(core.refusals.items())),
        rate_limited=s.rate_limited,
        rate_dropped=s.rate_dropped,
        peers_banned=s.peers_banned,
        link_paths=link_paths(links),
    )


def link_paths(links: Iterable[PeerLink]) -> tuple[tuple[str, int], ...]:
    """Open links counted by network path (``node.transport.ice_path``), sorted by path."""
    counts: dict[str, int] = {}
    for link in links:
        if link.path is not None:
            counts[link.path] = counts.get(link.path, 0) + 1
    return tuple(sorted(counts.items()))
