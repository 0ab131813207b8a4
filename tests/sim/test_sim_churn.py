"""Keys stay readable under churn: 5,000 nodes, 20 % of them dying per simulated hour (and as many
joining with the real protocol), republish and repair on, six simulated hours."""

from __future__ import annotations

import pytest

from node.events import StoreResult
from node.ids import NodeId, key_id
from node.records import Record
from node.sim.churn import ChurnRun
from node.sim.cluster import SimCluster, sim_config
from node.sim.models import churn_lifetime
from node.sim.oracle import oracle_bootstrap

pytestmark = [pytest.mark.timeout(1800), pytest.mark.slow, pytest.mark.soak]

NODES = 5000
KEYS = 50
HOURS = 6
RATE = 0.2


def test_keys_readable_under_20_percent_churn_per_hour(sim_seed: int) -> None:
    # Bucket refresh every 3 h instead of every 15 min (lookups, joiners and repair traffic keep
    # tables fresh too): the default would run ~1,000,000 refresh lookups in six hours (~50 M
    # messages), more than CI can afford; this way two refresh rounds run.
    config = sim_config(refresh_interval_s=3 * 3600.0)
    assert config.republish_interval_s < config.record_ttl_s  # republish on
    assert config.repair_interval_s <= 600.0  # repair on
    c = SimCluster(seed=sim_seed, config=config, keep_events=False)
    nodes = oracle_bootstrap(c, NODES)
    c.run_for(1.0)
    records: dict[NodeId, Record] = {}
    publishers: set[NodeId] = set()
    for i in range(KEYS):
        writer = c.rng.choice(nodes)
        kid = key_id(f"churn-{sim_seed}-{i}")
        data = b"v%d" % i
        res = c.run_op(writer, lambda p, now, kid=kid, data=data: p.store(kid, data, now))
        assert isinstance(res, StoreResult)
        assert res.ok, res
        records[kid] = res.record
        publishers.add(writer.id)
    lifetime = churn_lifetime(RATE)
    run = ChurnRun(c, lifetime, lifetime.mean_s, records, publishers)
    samples = run.run(HOURS * 3600.0, 1800.0)
    for s in samples:
        print(s)
    assert len(samples) == 2 * HOURS + 1
    # The churn really happened: about 1 - 0.8**6 = 74 % of the first nodes died, and as many
    # joined (the size stays near NODES).
    assert run.deaths >= 0.6 * NODES
    assert run.joins >= 0.6 * NODES
    assert 0.8 * NODES <= samples[-1].alive <= 1.2 * NODES
    for s in samples:
        assert s.readable >= 0.99, s
    assert run.gets.found >= 0.99 * run.gets.count
