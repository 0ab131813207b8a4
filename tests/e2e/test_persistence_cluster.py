"""Persistence across a whole process cluster (slow): a rolling restart of every peer, and
``down`` then ``up`` of the same cluster, keep every key and every node ID.

Issue 13 measured 0 of 200 keys after either before persistence existed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from supervisor.cluster import Cluster
from supervisor.errors import SupervisorError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

PEERS = 20
KEYS = 200
SEED = random.randrange(1 << 30)


def _store_all(cluster: Cluster, rng: random.Random) -> dict[str, bytes]:
    values = {f"persist-{i}": f"value-{i}".encode() for i in range(KEYS)}
    for key, value in values.items():
        cluster.node(rng.choice(cluster.nodes)).store(key, value)
    return values


def _readable(cluster: Cluster, values: dict[str, bytes], rng: random.Random) -> list[str]:
    missing = []
    for key, value in values.items():
        try:
            got = cluster.node(rng.choice(cluster.nodes)).get(key).value
        except SupervisorError:
            got = None
        if got != value:
            missing.append(key)
    return missing


def _up(name: str, root: Path) -> Cluster:
    return Cluster.up(PEERS, "process", name, state_dir=root, timeout_s=240)


def _ids(cluster: Cluster) -> dict[int, str]:
    return {i: cluster.node(i).id() for i in cluster.nodes}


def test_rolling_restart_of_every_peer_keeps_every_key(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    cluster = _up(f"roll{rng.randrange(1 << 20)}", tmp_path)
    try:
        values = _store_all(cluster, rng)
        ids = _ids(cluster)
        for index in cluster.nodes:
            since = cluster.event_count()
            cluster.restart(index)
            cluster.wait_restarted(index, timeout_s=60, since=since)
        assert _ids(cluster) == ids
        missing = _readable(cluster, values, rng)
        assert missing == [], f"{len(missing)} of {KEYS} keys unreadable (seed {SEED})"
    finally:
        cluster.down(purge=True)


def test_down_then_up_keeps_node_ids_and_every_key(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    name = f"dnup{rng.randrange(1 << 20)}"
    cluster = _up(name, tmp_path)
    try:
        values = _store_all(cluster, rng)
        ids = _ids(cluster)
        cluster.down()
        cluster = _up(name, tmp_path)
        assert _ids(cluster) == ids
        missing = _readable(cluster, values, rng)
        assert missing == [], f"{len(missing)} of {KEYS} keys unreadable (seed {SEED})"
    finally:
        cluster.down(purge=True)
    assert not (tmp_path / name).exists(), "down --purge left data behind"
