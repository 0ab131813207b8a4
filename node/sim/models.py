"""Models of the network and of node behaviour: latency per pair and node lifetimes.

Latency (one way, seconds), chosen with a spec string (``parse_latency``):

- ``const:MS`` — every message takes MS milliseconds.
- ``uniform:LO:HI`` — each message draws uniformly from [LO, HI] ms (the old default, 5–50 ms).
- ``measured`` — a long tail as measured between internet hosts: each node has an access delay
  drawn from a log-normal (median ``ACCESS_MEDIAN_MS``, sigma ``ACCESS_SIGMA``), a pair's delay is
  ``BASE_MS`` plus both access delays plus a small exponential jitter per message. One-way median
  ≈ 37 ms, p90 ≈ 95 ms, p99 ≈ 200 ms, a max of seconds — the shape of the King/PlanetLab RTT
  data sets (a median RTT near 80 ms and a heavy tail). A slow node is slow to everyone.

Lifetimes (``parse_lifetime``), as measured in deployed DHTs (Stutzbach & Rejaie 2006: session
lengths fit a Weibull with shape < 1 far better than an exponential):

- ``exp:MEAN_S`` — exponential (memoryless) sessions.
- ``weibull:SHAPE:SCALE_S`` — Weibull sessions; shape < 1 means many short and a few very long.
- ``churn_lifetime(rate)`` gives the exponential whose nodes die at ``rate`` per hour (0.2 =
  20 % of the nodes alive at the start of an hour are gone by its end).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Protocol

from node.ids import NodeId

ACCESS_MEDIAN_MS = 15.0
ACCESS_SIGMA = 1.0
BASE_MS = 5.0
JITTER_MEAN_MS = 2.0
HOUR_S = 3600.0


class SpecError(ValueError):
    """A model spec string that does not parse."""


class LatencyModel(Protocol):
    def delay(self, src: NodeId, dst: NodeId, rng: random.Random) -> float: ...

    def forget(self, node: NodeId) -> None: ...


@dataclass(frozen=True, slots=True)
class ConstantLatency:
    seconds: float

    def delay(self, src: NodeId, dst: NodeId, rng: random.Random) -> float:
        return self.seconds

    def forget(self, node: NodeId) -> None:
        return None


@dataclass(frozen=True, slots=True)
class UniformLatency:
    lo_s: float
    hi_s: float

    def delay(self, src: NodeId, dst: NodeId, rng: random.Random) -> float:
        return self.lo_s + (self.hi_s - self.lo_s) * rng.random()

    def forget(self, node: NodeId) -> None:
        return None


@dataclass(slots=True)
class MeasuredLatency:
    access_median_s: float = ACCESS_MEDIAN_MS / 1000.0
    sigma: float = ACCESS_SIGMA
    base_s: float = BASE_MS / 1000.0
    jitter_mean_s: float = JITTER_MEAN_MS / 1000.0
    access: dict[NodeId, float] = field(default_factory=dict)  # per node, drawn on first use

    def _access(self, node: NodeId, rng: random.Random) -> float:
        a = self.access.get(node)
        if a is None:
            a = self.access[node] = rng.lognormvariate(math.log(self.access_median_s), self.sigma)
        return a

    def delay(self, src: NodeId, dst: NodeId, rng: random.Random) -> float:
        return (
            self.base_s
            + self._access(src, rng)
            + self._access(dst, rng)
            + rng.expovariate(1.0 / self.jitter_mean_s)
        )

    def forget(self, node: NodeId) -> None:
        self.access.pop(node, None)


def _numbers(parts: list[str], count: int, spec: str) -> list[float]:
    if len(parts) != count:
        raise SpecError(f"{spec!r}: expected {count} number(s) after the name")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise SpecError(f"{spec!r}: not a number") from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise SpecError(f"{spec!r}: numbers must be finite and non-negative")
    return values


def parse_latency(spec: str) -> LatencyModel:
    """``const:MS``, ``uniform:LO:HI`` (milliseconds) or ``measured``."""
    name, *parts = spec.strip().lower().split(":")
    if name == "const":
        (ms,) = _numbers(parts, 1, spec)
        return ConstantLatency(ms / 1000.0)
    if name == "uniform":
        lo, hi = _numbers(parts, 2, spec)
        if hi < lo:
            raise SpecError(f"{spec!r}: HI must be at least LO")
        return UniformLatency(lo / 1000.0, hi / 1000.0)
    if name == "measured":
        _numbers(parts, 0, spec)
        return MeasuredLatency()
    raise SpecError(f"{spec!r}: latency is const:MS, uniform:LO:HI or measured")


class Lifetime(Protocol):
    def draw(self, rng: random.Random) -> float:
        """One session length, seconds."""
        ...


@dataclass(frozen=True, slots=True)
class ExponentialLifetime:
    mean_s: float

    def draw(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean_s)


@dataclass(frozen=True, slots=True)
class WeibullLifetime:
    shape: float
    scale_s: float

    def draw(self, rng: random.Random) -> float:
        return rng.weibullvariate(self.scale_s, self.shape)

    @property
    def mean_s(self) -> float:
        return self.scale_s * math.gamma(1.0 + 1.0 / self.shape)


def churn_lifetime(rate_per_hour: float) -> ExponentialLifetime:
    """Exponential sessions under which ``rate_per_hour`` of the nodes die within an hour."""
    if not 0.0 < rate_per_hour < 1.0:
        raise SpecError("a churn rate per hour is in (0, 1)")
    return ExponentialLifetime(HOUR_S / -math.log(1.0 - rate_per_hour))


def parse_lifetime(spec: str) -> Lifetime:
    """``exp:MEAN_S`` or ``weibull:SHAPE:SCALE_S``."""
    name, *parts = spec.strip().lower().split(":")
    if name == "exp":
        (mean,) = _numbers(parts, 1, spec)
        if mean <= 0:
            raise SpecError(f"{spec!r}: the mean must be positive")
        return ExponentialLifetime(mean)
    if name == "weibull":
        shape, scale = _numbers(parts, 2, spec)
        if shape <= 0 or scale <= 0:
            raise SpecError(f"{spec!r}: shape and scale must be positive")
        return WeibullLifetime(shape, scale)
    raise SpecError(f"{spec!r}: a lifetime is exp:MEAN_S or weibull:SHAPE:SCALE_S")
