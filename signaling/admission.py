"""Who may register, and whom ``peers`` hands out: the signaling server against throwaway IDs.

Registering is cheap (a fresh key pair), so 500 fake registrations that never answer an offer
used to fill every newcomer's candidate list (issue 13). This sans-IO module keeps the router's
answers useful (``now`` is passed in, no I/O):

- **Registration rate limits**: a token bucket per source address and one for the whole server
  (``rate_limited`` error). Settable (``AdmissionSettings``, env ``SIGNALING_REGISTER_*``).
- **Offer accounting**: every relayed offer opens a pending ``(target, cid)``; an answer from the
  target with that ``cid`` closes it and marks the target *proven* (it runs a real WebRTC
  stack); one still open after ``answer_timeout_s`` counts as *unanswered*. A registration with
  ``suspect_after`` unanswered offers and no answer since is *suspect*.
- **Ranking** (``pick``): proven registrations first (closest to the requester), then a few
  untested ones (``untested_share`` of the reply, so new honest nodes get tried and proven),
  suspects only when nothing else is left. Untested IDs already handed to the same requester
  within ``rehand_s`` are not handed again: a newcomer whose dials failed asks again and gets
  different candidates.

What this does not stop: fakes that answer offers with SDP that never connects. That needs the
nodes to report failed links, a later step.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from node.ids import NodeId, distance

MAX_ADDRESSES = 10_000  # per-address buckets kept; the full ones are dropped first
MAX_PENDING_OFFERS = 100_000


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    register_rate_per_addr_s: float = 20.0
    register_burst_per_addr: float = 100.0
    register_rate_global_s: float = 200.0
    register_burst_global: float = 1000.0
    answer_timeout_s: float = 10.0
    suspect_after: int = 2
    untested_share: float = 0.25
    rehand_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AdmissionSettings:
        """Read ``SIGNALING_REGISTER_RATE``, ``..._BURST``, ``..._RATE_GLOBAL``,
        ``..._BURST_GLOBAL`` (positive numbers); ValueError names a bad variable."""
        names = {
            "SIGNALING_REGISTER_RATE": "register_rate_per_addr_s",
            "SIGNALING_REGISTER_BURST": "register_burst_per_addr",
            "SIGNALING_REGISTER_RATE_GLOBAL": "register_rate_global_s",
            "SIGNALING_REGISTER_BURST_GLOBAL": "register_burst_global",
        }
        values: dict[str, float] = {}
        for var, attr in names.items():
            text = env.get(var)
            if text is None or not text.strip():
                continue
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{var}: not a number: {text!r}") from None
            if not value > 0:
                raise ValueError(f"{var}: must be positive, got {text!r}")
            values[attr] = value
        return cls(**values)  # type: ignore[arg-type]


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` spends one (a registration, a frame).
    A clock that goes backwards refills nothing. The router's per-connection frame limit uses
    it too."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self._tokens, self._last = rate, burst, burst, now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.burst

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class Standing:
    answered: int = 0
    unanswered: int = 0  # since the last answer

    @property
    def proven(self) -> bool:
        return self.answered > 0 and self.unanswered == 0


@dataclass(slots=True)
class AdmissionStats:
    registrations_refused: int = 0
    offers_answered: int = 0
    offers_unanswered: int = 0
    handed_suspects: int = 0


@dataclass(slots=True)
class Admission:
    settings: AdmissionSettings = field(default_factory=AdmissionSettings)
    stats: AdmissionStats = field(default_factory=AdmissionStats)
    _by_addr: dict[str, TokenBucket] = field(default_factory=dict)
    _global: TokenBucket | None = None
    _standing: dict[NodeId, Standing] = field(default_factory=dict)
    _pending: dict[tuple[NodeId, str], float] = field(default_factory=dict)
    _deadlines: list[tuple[float, NodeId, str]] = field(default_factory=list)
    _handed: dict[NodeId, dict[NodeId, float]] = field(default_factory=dict)

    # -- registration ----------------------------------------------------------------------

    def may_register(self, addr: str | None, now: float) -> bool:
        """Take one token from the address's and the global bucket (both must have one)."""
        s = self.settings
        if self._global is None:
            self._global = TokenBucket(s.register_rate_global_s, s.register_burst_global, now)
        bucket = None
        if addr is not None:
            bucket = self._by_addr.get(addr)
            if bucket is None:
                if len(self._by_addr) >= MAX_ADDRESSES:
                    self._prune(now)
                bucket = self._by_addr[addr] = TokenBucket(
                    s.register_rate_per_addr_s, s.register_burst_per_addr, now
                )
            if not bucket.take(now):
                self.stats.registrations_refused += 1
                return False
        if not self._global.take(now):
            self.stats.registrations_refused += 1
            return False
        return True

    def _prune(self, now: float) -> None:
        for addr in [a for a, b in self._by_addr.items() if b.full(now)]:
            del self._by_addr[addr]
        while len(self._by_addr) >= MAX_ADDRESSES:  # all busy: forget the oldest
            del self._by_addr[next(iter(self._by_addr))]

    def registered(self, node_id: NodeId) -> None:
        self._standing.setdefault(node_id, Standing())

    def gone(self, node_id: NodeId) -> None:
        self._standing.pop(node_id, None)
        self._handed.pop(node_id, None)

    # -- offers ----------------------------------------------------------------------------

    def offer(self, target: NodeId, cid: str, now: float) -> None:
        self.expire(now)
        if len(self._pending) >= MAX_PENDING_OFFERS:
            return
        deadline = now + self.settings.answer_timeout_s
        if (target, cid) not in self._pending:
            self._pending[(target, cid)] = deadline
            heapq.heappush(self._deadlines, (deadline, target, cid))

    def answer(self, sender: NodeId, cid: str, now: float) -> None:
        self.expire(now)
        if self._pending.pop((sender, cid), None) is not None:
            st = self._standing.get(sender)
            if st is not None:
                st.answered += 1
                st.unanswered = 0
            self.stats.offers_answered += 1

    def expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, target, cid = heapq.heappop(self._deadlines)
            if self._pending.pop((target, cid), None) is None:
                continue
            self.stats.offers_unanswered += 1
            st = self._standing.get(target)
            if st is not None:
                st.unanswered += 1

    def standing(self, node_id: NodeId) -> Standing | None:
        return self._standing.get(node_id)

    def suspect(self, node_id: NodeId) -> bool:
        st = self._standing.get(node_id)
        return st is not None and st.unanswered >= self.settings.suspect_after

    # -- ranking ---------------------------------------------------------------------------

    def pick(
        self, requester: NodeId, registered: Iterable[NodeId], n: int, now: float
    ) -> list[NodeId]:
        """Up to ``n`` candidates for ``requester`` (see the module docstring)."""
        self.expire(now)
        s = self.settings
        handed = self._handed.setdefault(requester, {})
        for node_id in [x for x, at in handed.items() if now - at >= s.rehand_s]:
            del handed[node_id]
        proven: list[NodeId] = []
        untested: list[NodeId] = []
        retried: list[NodeId] = []  # untested, already handed to this requester recently
        suspects: list[NodeId] = []
        for node_id in registered:
            if node_id == requester:
                continue
            st = self._standing.get(node_id) or Standing()
            if st.unanswered >= s.suspect_after:
                suspects.append(node_id)
            elif st.proven:
                proven.append(node_id)
            elif node_id in handed:
                retried.append(node_id)
            else:
                untested.append(node_id)

        def closest(ids: list[NodeId], k: int) -> list[NodeId]:
            return heapq.nsmallest(k, ids, key=lambda other: distance(requester, other))

        share = min(len(untested), max(1, round(n * s.untested_share)) if n > 1 else 0)
        out = closest(proven, n - share)
        out += closest(untested, n - len(out))
        for pool in (retried, suspects):
            if len(out) < n:
                extra = closest(pool, n - len(out))
                if pool is suspects:
                    self.stats.handed_suspects += len(extra)
                out += extra
        for node_id in out:
            if not (self._standing.get(node_id) or Standing()).proven:
                handed.setdefault(node_id, now)
        return out
