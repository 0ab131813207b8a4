"""Latency, lifetime and NAT models of the simulator."""

from __future__ import annotations

import math
import random

import pytest

from node.events import FindNodeResult, PingResult
from node.ids import random_id
from node.sim.__main__ import percentile
from node.sim.cluster import SimCluster
from node.sim.models import (
    ConstantLatency,
    MeasuredLatency,
    SpecError,
    UniformLatency,
    WeibullLifetime,
    churn_lifetime,
    parse_latency,
    parse_lifetime,
)
from node.sim.oracle import oracle_bootstrap


def test_latency_specs() -> None:
    assert parse_latency("const:30") == ConstantLatency(0.03)
    assert parse_latency("uniform:5:50") == UniformLatency(0.005, 0.05)
    assert isinstance(parse_latency("measured"), MeasuredLatency)
    for bad in ("", "const", "const:x", "uniform:9:1", "const:-1", "measured:3", "gauss:1"):
        with pytest.raises(SpecError):
            parse_latency(bad)


def test_measured_latency_has_a_long_tail_and_is_per_pair() -> None:
    rng = random.Random(7)
    m = MeasuredLatency()
    nodes = [random_id(rng) for _ in range(400)]
    samples = [m.delay(rng.choice(nodes), rng.choice(nodes), rng) for _ in range(20000)]
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    assert 0.025 < p50 < 0.055
    assert p99 > 4 * p50  # the tail
    a, b = nodes[:2]
    pair = [m.delay(a, b, rng) for _ in range(200)]
    assert max(pair) - min(pair) < 0.1 * max(pair) + 0.05  # a pair only jitters
    m.forget(a)
    assert a not in m.access


def test_lifetimes() -> None:
    rng = random.Random(3)
    lt = churn_lifetime(0.2)
    draws = [lt.draw(rng) for _ in range(20000)]
    died_in_an_hour = sum(d < 3600.0 for d in draws) / len(draws)
    assert abs(died_in_an_hour - 0.2) < 0.015
    w = parse_lifetime("weibull:0.5:3600")
    assert isinstance(w, WeibullLifetime)
    wd = [w.draw(rng) for _ in range(20000)]
    assert abs(sum(wd) / len(wd) - w.mean_s) < 0.1 * w.mean_s
    assert w.mean_s == pytest.approx(3600 * math.gamma(3.0))
    assert percentile(wd, 50) < w.mean_s / 2  # shape < 1: many short sessions, a few long
    for bad in ("exp:0", "exp", "weibull:0:5", "poisson:3"):
        with pytest.raises(SpecError):
            parse_lifetime(bad)
    with pytest.raises(SpecError):
        churn_lifetime(1.0)


def test_constant_latency_in_a_cluster(sim_seed: int) -> None:
    c = SimCluster(seed=sim_seed, latency=ConstantLatency(0.04))
    oracle_bootstrap(c, 20)
    a, b = c.alive()[:2]
    res = c.run_op(a, lambda p, now: p.ping(b.id, now))
    assert isinstance(res, PingResult)
    assert res.ok
    assert res.rtt_s == pytest.approx(0.08)


def test_natted_nodes_are_reachable_only_where_they_opened_a_pinhole(sim_seed: int) -> None:
    c = SimCluster(seed=sim_seed, nat_share=0.3, keep_events=False)
    nodes = oracle_bootstrap(c, 300)
    natted = [n for n in nodes if n.id in c.net.natted]
    open_ = [n for n in nodes if n.id not in c.net.natted]
    assert 0.2 * 300 < len(natted) < 0.4 * 300
    stranger, nat = open_[0], natted[0]
    cold = c.run_op(stranger, lambda p, now: p.ping(nat.id, now))
    assert isinstance(cold, PingResult)
    assert not cold.ok  # unsolicited: dropped at the NAT
    out = c.run_op(nat, lambda p, now: p.ping(stranger.id, now))
    assert isinstance(out, PingResult)
    assert out.ok  # its own request and the answer pass
    warm = c.run_op(stranger, lambda p, now: p.ping(nat.id, now))
    assert isinstance(warm, PingResult)
    assert warm.ok  # the pinhole is open now
    # A NAT-ed node still looks up (its requests open their own pinholes); the NAT-ed peers it
    # asks cannot answer (nobody opened theirs), so the closest it finds are the open nodes.
    res = c.run_op(natted[1], lambda p, now: p.find_node(random_id(c.rng), now))
    assert isinstance(res, FindNodeResult)
    assert len(res.closest) >= c.config.k // 2
    assert not set(res.closest) & c.net.natted
    assert res.failed > 0
    assert c.net.nat_dropped > 0
