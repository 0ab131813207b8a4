"""Quotas and rate limits: what one publisher or one peer may cost this node. Sans-IO.

- ``Ledger``: the bytes and records the record store holds, in total, per publisher and per
  sending peer. A record costs ``record_cost`` (its data and salt plus a fixed overhead that
  stands for the key, the signature and the Python objects around them, so that a flood of tiny
  records is bounded as well as a flood of big ones). ``admit`` says whether one more record fits;
  the store charges on insert and releases on replace/expiry, so the counts are exact.
  Our own writes (``peer`` None) are charged to the total but never refused.
- ``RateLimiter``: token buckets per sending peer for inbound requests — one counting requests,
  one counting their bytes (a flood of 60 KiB STOREs is as costly as one of many small ones).
  ``check`` answers ``ALLOW``, ``REFUSE`` (answer with ``rate_limited``, at most a tenth of the
  rate) or ``DROP`` (beyond that: stay silent; the protocol checks before decoding, so a dropped
  request costs a dict lookup). Neither is free — every request still costs the transport its
  decryption and reassembly — so the excess has a bucket of its own (``burst`` deep, refilled at
  a quarter of the rate; a request refused or dropped takes one unit, or as many as its size
  is times the average request the byte rate allows): a peer that empties it, i.e. keeps
  sending well over its rate for a few seconds, gets ``BAN`` once, and the node disconnects it
  and refuses it for a while.
  Buckets of peers not heard from for a while are forgotten (bounded memory).

The reasons given to peers are the strings ``QUOTA`` and ``RATE_LIMITED``.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

QUOTA = "quota"
RATE_LIMITED = "rate_limited"
RECORD_OVERHEAD_BYTES = 640  # key, public key, signature, entry, dict and heap slots (measured)
_BUCKET_IDLE_S = 60.0
MAX_REQUEST_BYTES = 64 * 1024  # a byte bucket always holds one message of the largest size


def record_cost(data_len: int, salt_len: int = 0) -> int:
    return data_len + salt_len + RECORD_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class StoreLimits:
    max_bytes: int  # the whole store
    publisher_bytes: int
    publisher_records: int
    peer_bytes: int
    peer_records: int


class Ledger:
    def __init__(self, limits: StoreLimits) -> None:
        self.limits = limits
        self.total_bytes = 0
        self.pub_bytes: Counter[bytes] = Counter()
        self.pub_records: Counter[bytes] = Counter()
        self.peer_bytes: Counter[bytes] = Counter()
        self.peer_records: Counter[bytes] = Counter()

    def admit(
        self, cost: int, pub: bytes, peer: bytes | None, freed: tuple[int, bytes, bytes | None]
    ) -> str | None:
        """``None`` when a record of ``cost`` from ``pub`` sent by ``peer`` fits, else why not.
        ``freed``: (cost, pub, peer) of the record it would replace (cost 0: none)."""
        if peer is None:
            return None
        lim = self.limits
        f_cost, f_pub, f_peer = freed
        same_pub = f_cost if f_pub == pub else 0
        same_peer = f_cost if f_peer == peer else 0
        if self.total_bytes - f_cost + cost > lim.max_bytes:
            return f"{QUOTA}: store full ({lim.max_bytes} bytes)"
        if self.pub_bytes[pub] - same_pub + cost > lim.publisher_bytes:
            return f"{QUOTA}: publisher over {lim.publisher_bytes} bytes"
        if self.pub_records[pub] + (0 if same_pub else 1) > lim.publisher_records:
            return f"{QUOTA}: publisher over {lim.publisher_records} records"
        if self.peer_bytes[peer] - same_peer + cost > lim.peer_bytes:
            return f"{QUOTA}: peer over {lim.peer_bytes} bytes"
        if self.peer_records[peer] + (0 if same_peer else 1) > lim.peer_records:
            return f"{QUOTA}: peer over {lim.peer_records} records"
        return None

    def charge(self, cost: int, pub: bytes, peer: bytes | None, sign: int = 1) -> None:
        self.total_bytes += sign * cost
        self.pub_bytes[pub] += sign * cost
        self.pub_records[pub] += sign
        if sign < 0 and self.pub_records[pub] <= 0:
            del self.pub_bytes[pub], self.pub_records[pub]
        if peer is not None:
            self.peer_bytes[peer] += sign * cost
            self.peer_records[peer] += sign
            if sign < 0 and self.peer_records[peer] <= 0:
                del self.peer_bytes[peer], self.peer_records[peer]

    def release(self, cost: int, pub: bytes, peer: bytes | None) -> None:
        self.charge(cost, pub, peer, -1)


class Verdict(enum.Enum):
    ALLOW = "allow"
    REFUSE = "refuse"
    DROP = "drop"
    BAN = "ban"  # dropped, and the peer has been far over its rate for too long


@dataclass(slots=True)
class _Bucket:
    tokens: float
    byte_tokens: float
    refusals: float
    excess: float
    at: float  # when ``tokens`` and ``byte_tokens`` were last refilled
    side_at: float  # when ``refusals`` and ``excess`` were: only a request over the rate needs them


class RateLimiter:
    """Token buckets per peer: ``rate_per_s`` requests (``bytes_per_s`` bytes) a second, bursts
    up to ``burst`` requests (``bytes_burst`` bytes); 0 disables either limit."""

    def __init__(
        self, rate_per_s: float, burst: float, bytes_per_s: float = 0.0, bytes_burst: float = 0.0
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(burst, 1.0)
        self.bytes_per_s = bytes_per_s
        self.bytes_burst = max(bytes_burst, MAX_REQUEST_BYTES)
        self.excess_rate_per_s = rate_per_s / 4
        self._unit_bytes = bytes_per_s / rate_per_s if bytes_per_s > 0 and rate_per_s > 0 else 0.0
        # Refusals are answers too: a tenth of the rate, the rest of an excess is dropped unread.
        self.refusal_rate_per_s = max(1.0, rate_per_s / 10)
        self.refusal_burst = max(1.0, self.burst / 10)
        self._buckets: dict[bytes, _Bucket] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, peer: bytes, now: float, size: int = 0) -> Verdict:
        """The verdict on one request of ``size`` bytes from ``peer``."""
        if self.rate_per_s <= 0:
            return Verdict.ALLOW  # 0 disables the limit
        b = self._buckets.get(peer)
        if b is None:
            b = _Bucket(self.burst, self.bytes_burst, self.refusal_burst, self.burst, now, now)
            self._buckets[peer] = b
            self._sweep(now)
        elapsed = now - b.at
        if elapsed > 0.0:
            b.at = now
            b.tokens = min(self.burst, b.tokens + elapsed * self.rate_per_s)
            b.byte_tokens = min(self.bytes_burst, b.byte_tokens + elapsed * self.bytes_per_s)
        if b.tokens >= 1.0 and (self.bytes_per_s <= 0 or b.byte_tokens >= size):
            b.tokens -= 1.0
            b.byte_tokens -= size
            return Verdict.ALLOW
        # Over the rate: refill the other two buckets (linear refills up to a cap give the same
        # level whether applied at every request or once now, since nothing drew on them since).
        elapsed = max(0.0, now - b.side_at)
        b.side_at = now
        b.refusals = min(self.refusal_burst, b.refusals + elapsed * self.refusal_rate_per_s)
        b.excess = min(self.burst, b.excess + elapsed * self.excess_rate_per_s)
        b.excess -= max(1.0, size / self._unit_bytes) if self._unit_bytes else 1.0
        if b.excess < 0.0:
            b.excess = self.burst  # reported once; the peer is gone before it empties again
            return Verdict.BAN
        if b.refusals >= 1.0:
            b.refusals -= 1.0
            return Verdict.REFUSE
        return Verdict.DROP

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _BUCKET_IDLE_S
        idle = [p for p, b in self._buckets.items() if now - b.at > _BUCKET_IDLE_S]
        for p in idle:
            del self._buckets[p]
