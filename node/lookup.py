"""The iterative lookup as a steppable state machine (after rust-libp2p's ``ClosestPeersIter``).

The iterator knows candidate peers sorted by XOR distance to the target, each in a state
(``NOT_CONTACTED → WAITING → SUCCEEDED | FAILED``). It does no I/O and keeps no timers: the caller
asks ``next_peer()`` for whom to contact, reports ``on_success(peer, closer)`` or
``on_failure(peer)``, and owns the per-request timeouts and the whole-lookup deadline.

Rules:
- At most ``alpha`` requests in flight; a new one may start as soon as any returns (no rounds).
  When ``alpha`` answers in a row brought no progress (no new closest peer, and the candidate
  set already holds ``k`` peers) the lookup is *stalled* and may have up to ``k`` requests in
  flight, to finish asking the remaining closest peers at once (Kademlia §2.3's final round;
  libp2p's ``State::Stalled``). Progress ends the stall.
- The own ID is never a candidate.
- Only peers that could still be among the ``k`` closest are contacted: a candidate farther than
  the ``k``-th closest non-failed peer is never asked.
- The lookup is finished when the ``k`` closest non-failed peers have all succeeded, or when no
  candidate is left to ask and nothing is in flight, or when ``finish()`` was called.
- Hops: a peer's depth is 1 for the initial candidates and ``depth(introducer) + 1`` for one
  learned from a response; ``hops`` of a result is the depth of the peer that gave the answer.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from node.ids import NodeId, as_int


class PeerState(enum.Enum):
    NOT_CONTACTED = 0
    WAITING = 1
    SUCCEEDED = 2
    FAILED = 3


_NEW = PeerState.NOT_CONTACTED
_NOT_CONTACTED = (PeerState.NOT_CONTACTED,)
_from_bytes = int.from_bytes
_bisect = bisect.bisect
_FAILED = PeerState.FAILED
_PENDING = (PeerState.NOT_CONTACTED, PeerState.WAITING)


@dataclass(slots=True)
class Candidate:
    id: NodeId
    distance: int
    state: PeerState
    depth: int
    via: NodeId | None  # the peer that told us about it (a relay for connection setup)


class LookupIter:
    def __init__(
        self,
        target: bytes,
        own_id: NodeId,
        initial: Iterable[NodeId],
        k: int,
        alpha: int,
    ) -> None:
        self.target = target
        self._t = as_int(target)
        self.own_id = own_id
        self.k = k
        self.alpha = alpha
        # The candidates by distance, ascending (two parallel lists: bisect on plain ints).
        self._dists: list[int] = []
        self._order: list[Candidate] = []
        self._peers: dict[NodeId, Candidate] = {}
        self._in_flight = 0
        self._finished = False
        self._no_progress = 0
        self.stalled = False
        self.contacted = 0
        self.failed = 0
        for p in initial:
            self._add(p, 1, None)

    def _add(self, peer: NodeId, depth: int, via: NodeId | None) -> None:
        if peer == self.own_id or peer in self._peers:
            return
        d = _from_bytes(peer, "big") ^ self._t  # ``as_int``, inlined: called for every answer
        c = self._peers[peer] = Candidate(peer, d, _NEW, depth, via)
        i = _bisect(self._dists, d)
        self._dists.insert(i, d)
        self._order.insert(i, c)

    # -- outputs ---------------------------------------------------------------------------------

    def _first_of_closest(self, states: tuple[PeerState, ...]) -> Candidate | None:
        """The closest candidate in one of ``states`` among the k closest that have not failed
        (only these may be asked, and only these decide whether the lookup is done)."""
        ahead = 0
        for c in self._order:
            state = c.state
            if state in states:
                return c
            if state is not _FAILED:
                ahead += 1
                if ahead >= self.k:
                    return None
        return None

    @property
    def finished(self) -> bool:
        """Finished: ``finish()`` was called, or none of the k closest live peers is still
        to be asked or awaited."""
        return self._finished or self._first_of_closest(_PENDING) is None

    def next_peer(self) -> Candidate | None:
        """The next peer to contact (now marked WAITING), or None (wait, or finished)."""
        if self._finished or self._in_flight >= self.capacity:
            return None
        c = self._first_of_closest(_NOT_CONTACTED)
        if c is not None:
            c.state = PeerState.WAITING
            self._in_flight += 1
            self.contacted += 1
        return c

    @property
    def capacity(self) -> int:
        """How many requests may be in flight now."""
        return max(self.k, self.alpha) if self.stalled else self.alpha

    def candidate(self, peer: NodeId) -> Candidate | None:
        return self._peers.get(peer)

    def closest_succeeded(self, n: int | None = None) -> list[NodeId]:
        n = self.k if n is None else n
        out = [c.id for c in self._order if c.state is PeerState.SUCCEEDED]
        return out[:n]

    def closest_seen(self, n: int) -> list[NodeId]:
        return [c.id for c in self._order if c.state is not _FAILED][:n]

    def depth(self, peer: NodeId) -> int:
        c = self._peers.get(peer)
        return c.depth if c is not None else 0

    # -- inputs ----------------------------------------------------------------------------------

    def on_success(self, peer: NodeId, closer: Iterable[NodeId]) -> bool:
        """A response from ``peer``; False when ``peer`` was not awaited (ignored)."""
        c = self._peers.get(peer)
        if c is None or c.state is not PeerState.WAITING:
            return False
        c.state = PeerState.SUCCEEDED
        self._in_flight -= 1
        known = self._peers
        count = len(known)
        best = self._dists[0] if self._dists else None
        depth = c.depth + 1
        add = self._add
        for p in closer:
            if p not in known:  # most answers repeat known peers: skip the call
                add(p, depth, peer)
        progress = (best is not None and self._dists[0] < best) or (
            count < self.k and len(known) > count
        )
        if progress:
            self._no_progress = 0
            self.stalled = False
        else:
            self._no_progress += 1
            if self._no_progress >= self.alpha:
                self.stalled = True
        return True

    def on_failure(self, peer: NodeId) -> bool:
        c = self._peers.get(peer)
        if c is None or c.state is not PeerState.WAITING:
            return False
        c.state = PeerState.FAILED
        self._in_flight -= 1
        self.failed += 1
        return True

    def finish(self) -> None:
        """Stop issuing requests (e.g. FIND_VALUE found the value)."""
        self._finished = True

    @property
    def in_flight(self) -> int:
        return self._in_flight
