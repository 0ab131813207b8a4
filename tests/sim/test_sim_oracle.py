"""The oracle bootstrap builds the tables the real join converges to (2,000 nodes).

Tolerance (stated in docs/simulator.md): per bucket index, the mean occupancy over all nodes of
the joined network is within 25 % (or 1 contact, whichever is larger) of the oracle's, and the
mean table size within 15 %. Every table of both networks is valid by the bucket rules.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from node.ids import bucket_index
from node.routing import RoutingTable
from node.sim.cluster import SimCluster
from node.sim.oracle import oracle_bootstrap

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

N = 2000
BUCKET_TOLERANCE = 0.25
SIZE_TOLERANCE = 0.15


def check_table(table: RoutingTable) -> None:
    """The bucket rules: each contact in the bucket of its first differing bit, at most k per
    bucket, never the owner; replacements in their bucket, at most k, not also contacts; the
    sorted integer index holds exactly the contacts."""
    seen = set()
    for index, b in table.buckets():
        assert len(b.contacts) <= table.k
        assert len(b.replacements) <= table.k
        for c in b.contacts:
            assert c.id != table.own_id
            assert bucket_index(table.own_id, c.id) == index
            assert c.n == int.from_bytes(c.id, "big")
            seen.add(c.id)
        for r in b.replacements:
            assert bucket_index(table.own_id, r) == index
            assert r not in table
    assert len(seen) == len(table)
    assert table._sorted == sorted(int.from_bytes(i, "big") for i in seen)


def occupancy(c: SimCluster) -> tuple[dict[int, float], float]:
    per: dict[int, int] = defaultdict(int)
    total = 0
    nodes = c.alive()
    for n in nodes:
        check_table(n.proto.table)
        for index, b in n.proto.table.buckets():
            per[index] += len(b.contacts)
        total += len(n.proto.table)
    return {i: v / len(nodes) for i, v in per.items()}, total / len(nodes)


@pytest.mark.soak
def test_oracle_tables_match_real_join(sim_seed: int) -> None:
    joined = SimCluster(seed=sim_seed, keep_events=False)
    joined.bootstrap(N)
    oracle = SimCluster(seed=sim_seed, keep_events=False)
    oracle_bootstrap(oracle, N)
    assert len(oracle.alive()) == len(joined.alive()) == N

    j_per, j_size = occupancy(joined)
    o_per, o_size = occupancy(oracle)
    print(f"mean table size: join {j_size:.1f}, oracle {o_size:.1f}")
    for i in sorted(set(j_per) | set(o_per)):
        print(f"bucket {i:3d}: join {j_per.get(i, 0):6.2f} oracle {o_per.get(i, 0):6.2f}")
    assert abs(j_size - o_size) <= SIZE_TOLERANCE * o_size
    for i in sorted(set(j_per) | set(o_per)):
        o, j = o_per.get(i, 0.0), j_per.get(i, 0.0)
        assert abs(j - o) <= max(BUCKET_TOLERANCE * o, 1.0), f"bucket {i}: join {j} oracle {o}"
    # The far buckets are full in both (every node has >= k candidates there).
    k = oracle.config.k
    assert o_per[0] == k
    assert j_per[0] >= 0.95 * k


def test_oracle_network_serves_lookups(sim_seed: int) -> None:
    c = SimCluster(seed=sim_seed, keep_events=False)
    nodes = oracle_bootstrap(c, 1000)
    writer, reader = c.rng.sample(nodes, 2)
    res = c.run_op(writer, lambda p, now: p.store(b"\x01" * 32, b"v", now))
    assert res.ok  # type: ignore[union-attr]
    got = c.run_op(reader, lambda p, now: p.get(b"\x01" * 32, now))
    assert got.record == res.record  # type: ignore[union-attr]


def test_closest_is_exact_on_seeded_tables(sim_seed: int) -> None:
    """``closest`` over the sorted index equals a brute-force sort, on oracle-seeded tables that
    then lose and gain contacts (replacements promoted, newcomers added)."""
    c = SimCluster(seed=sim_seed, keep_events=False)
    nodes = oracle_bootstrap(c, 600)
    rng = c.rng
    for node in rng.sample(nodes, 20):
        table = node.proto.table
        members = [x.id for x in table.contacts()]
        for victim in rng.sample(members, len(members) // 4):
            table.remove(victim)
        for other in rng.sample(nodes, 50):
            table.update(other.id, 1.0)
        check_table(table)
        members = [x.id for x in table.contacts()]
        for _ in range(30):
            target = rng.choice([rng.choice(nodes).id, rng.randbytes(32)])
            exclude = rng.choice([None, rng.choice(members)])
            t = int.from_bytes(target, "big")
            expected = sorted(
                (m for m in members if m != exclude), key=lambda m: int.from_bytes(m, "big") ^ t
            )
            for n in (1, 5, 20, 40):
                assert table.closest(target, n, exclude=exclude) == expected[:n]
