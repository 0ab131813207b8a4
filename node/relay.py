"""The SIGNAL relay: connection-setup payloads routed greedily through connected peers.

A node that wants to reach an unconnected contact sends its SDP offer as a ``Signal`` to a
connected peer closer to the target (normally the one that introduced the contact); each hop
forwards it to its connected peer closest to the target, or straight to the target when
connected to it. The answer travels back the same way.

Rules:
- Every signal has a random 64-bit id (``sid``); a node handles one id once (bounded dedup of
  the last ``SIGNAL_DEDUP_MAX`` ids, its own included), which stops loops and duplicates.
- ``hops_left`` starts at the configured hop limit and drops by one per forward; a signal that
  arrives with none left is delivered only if it is for us, never forwarded.
- A signal is never sent back to the peer it came from nor to its source.
"""

from __future__ import annotations

import random
from collections.abc import Set
from dataclasses import dataclass

from node.events import SignalReceived
from node.ids import NodeId, as_int
from node.messages import Signal

SIGNAL_DEDUP_MAX = 4096


@dataclass(frozen=True, slots=True)
class Forward:
    """Send ``signal`` to the connected peer ``peer``."""

    peer: NodeId
    signal: Signal


class SignalRelay:
    def __init__(self, own_id: NodeId, hop_limit: int, rng: random.Random) -> None:
        self.own_id = own_id
        self.hop_limit = hop_limit
        self._rng = rng
        self._seen: dict[int, None] = {}  # insertion-ordered: the oldest id is dropped first

    def _first_time(self, sid: int) -> bool:
        if sid in self._seen:
            return False
        self._seen[sid] = None
        if len(self._seen) > SIGNAL_DEDUP_MAX:
            del self._seen[next(iter(self._seen))]
        return True

    def receive(
        self, peer: NodeId, msg: Signal, connected: Set[NodeId]
    ) -> SignalReceived | Forward | None:
        """A signal from ``peer``: deliver it (an event), forward it, or drop it (None)."""
        if not self._first_time(msg.sid):
            return None
        if msg.target == self.own_id:
            return SignalReceived(msg.source, msg.payload)
        if msg.hops_left <= 0:
            return None
        nxt = next_hop(msg.target, connected, exclude={peer, msg.source})
        if nxt is None:
            return None
        return Forward(nxt, Signal(msg.sid, msg.source, msg.target, msg.hops_left - 1, msg.payload))

    def originate(
        self, target: NodeId, payload: bytes, connected: Set[NodeId], via: NodeId | None
    ) -> Forward | None:
        """A new signal to ``target``, first through ``via`` when it is connected."""
        sid = self._rng.getrandbits(64)
        self._first_time(sid)
        hop = via if via is not None and via in connected else None
        hop = hop or next_hop(target, connected, exclude=frozenset())
        if hop is None:
            return None
        return Forward(hop, Signal(sid, self.own_id, target, self.hop_limit, payload))


def next_hop(target: NodeId, connected: Set[NodeId], exclude: Set[NodeId]) -> NodeId | None:
    """``target`` itself when connected, else the connected peer closest to it (not excluded)."""
    if target in connected:
        return target
    best: NodeId | None = None
    best_d = 0
    t = as_int(target)
    for p in connected:
        if p in exclude:
            continue
        d = as_int(p) ^ t
        if best is None or d < best_d:
            best, best_d = p, d
    return best
