"""Banned peers: who is refused until when. Sans-IO (``now`` is passed in).

The core bans a peer that floods it far over its request rate (``node.quotas`` says when):
``strike`` bans it for ``base_s``, doubling with each new ban up to ``MAX_BAN_S``; a ban is
remembered for ``MAX_BAN_S`` after it ends, so a peer that comes back and floods again gets the
longer one. The connection manager keeps its own ``BanList`` of the bans the core reported
(``hold``: a fixed duration), to refuse the peer's offers and our dials to it. Memory is bounded:
when ``MAX_BANNED`` peers are remembered, the forgotten-enough ones are dropped.
"""

from __future__ import annotations

MAX_BANNED = 4096  # peers remembered; old entries are pruned when it fills
MAX_BAN_S = 3600.0  # the longest ban, and how long a ban is remembered after it ends


class BanList:
    def __init__(self) -> None:
        self._bans: dict[bytes, tuple[float, int]] = {}  # peer → (refused until, bans so far)
        self.active = False
        """A peer was ever banned: a plain attribute, checked on every message before
        ``banned`` (which only then costs a call)."""

    def __len__(self) -> int:
        return len(self._bans)

    def banned(self, peer: bytes, now: float) -> bool:
        ban = self._bans.get(peer)
        return ban is not None and now < ban[0]

    def strike(self, peer: bytes, now: float, base_s: float) -> tuple[float, int]:
        """Ban ``peer`` again: (for how long, the how-manieth ban this is)."""
        strikes = self._bans.get(peer, (0.0, 0))[1] + 1
        for_s = min(MAX_BAN_S, base_s * 2 ** (strikes - 1))
        self._put(peer, now + for_s, strikes, now)
        return for_s, strikes

    def hold(self, peer: bytes, now: float, for_s: float) -> None:
        """Refuse ``peer`` for ``for_s`` from ``now`` (a ban decided elsewhere)."""
        self._put(peer, now + for_s, self._bans.get(peer, (0.0, 0))[1] + 1, now)

    def _put(self, peer: bytes, until: float, strikes: int, now: float) -> None:
        if len(self._bans) >= MAX_BANNED:
            self._bans = {p: b for p, b in self._bans.items() if b[0] + MAX_BAN_S > now}
        self._bans[peer] = (until, strikes)
        self.active = True
