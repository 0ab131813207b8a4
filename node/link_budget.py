"""The link budget: which open links a node closes, so that its idle cost does not grow with
every peer it ever talked to.

An open link costs memory, and CPU when it is probed (only the ``min_links`` closest are:
``ConnectionManager._rewatch``), so a node keeps only the links it needs:

- every link with a request in flight (closing it would fail the request);
- links to its ``min_links`` closest connected peers by XOR distance (its neighbourhood: the
  peers that route SIGNALs towards it and that lookups of nearby keys end at);
- every link used for DHT traffic within the last ``idle_s`` seconds (keepalive traffic, PING
  and PONG, does not count as use);

and closes the rest. Above ``max_links`` (the hard cap) the least recently used links go too,
even recently used ones, but never one with a request in flight. A closed link's contact stays
in the routing table: the next message for it dials again.

Pure: the connection manager calls ``links_to_close`` with its view and closes what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node.ids import NodeId


@dataclass(frozen=True, slots=True)
class LinkUse:
    id: NodeId
    last_used: float  # last DHT (non-keepalive) message either way, loop seconds


@dataclass(frozen=True, slots=True)
class Budget:
    max_links: int = 64
    """Hard cap on open links."""
    min_links: int = 8
    """Links to the closest peers that idleness never closes."""
    idle_s: float = 120.0
    """A link unused this long is closed (0 or less: idle links are never closed)."""


def links_to_close(
    links: Sequence[LinkUse],
    own: NodeId,
    now: float,
    budget: Budget,
    busy: Callable[[NodeId], bool],
) -> list[NodeId]:
    """The links to close now, least recently used first."""
    own_n = int.from_bytes(own, "big")
    by_distance = sorted(links, key=lambda u: int.from_bytes(u.id, "big") ^ own_n)
    neighbours = {u.id for u in by_distance[: budget.min_links]}
    closable = sorted((u for u in links if not busy(u.id)), key=lambda u: u.last_used)
    close: list[NodeId] = []
    if budget.idle_s > 0:
        idle_before = now - budget.idle_s
        close = [u.id for u in closable if u.last_used <= idle_before and u.id not in neighbours]
    excess = len(links) - len(close) - budget.max_links
    if excess > 0:
        chosen = set(close)
        close += [u.id for u in closable if u.id not in chosen][:excess]
    return close
