"""The Swarm backend on a one-node swarm (``docker swarm init --advertise-addr 127.0.0.1``).

10 peers form; dhtctl store/get through the supervisor with CURVE on; scale 10 -> 14 -> 8 (the
service's replicas and slots follow); a killed peer's container is replaced by Swarm in the same
slot with the same node ID; a client without the cluster key gets nothing from the front, a
node's control socket or its event socket; ``down`` leaves no service, secret, volume or
container of the cluster. Needs the project image on the engine of ``DOCKER_HOST``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.cluster import Cluster
from supervisor.launcher import Role
from supervisor.swarm import PORT_BASE_ENV, service_name
from tests.support.cli import FREE_PORTS_ENV, run_cli
from tests.support.curve_probe import plain_request_answered, plain_subscriber_hears
from tests.support.swarm import free_port_block, one_node_swarm

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PEERS = 10
MAX_PEERS = 14
LABEL = "dht.cluster"


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    with one_node_swarm() as client:
        yield client


@pytest.fixture(scope="module")
def cluster(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("swarm-state")
    base = free_port_block(2 * MAX_PEERS + 2)
    env = {PORT_BASE_ENV: str(base)}
    c = Cluster.up(PEERS, "swarm", state_dir=root, env=env, timeout_s=180)
    try:
        yield c
    finally:
        c.down()
    assert not _leftovers(engine, c.name)


def _leftovers(engine: Any, name: str) -> list[str]:
    selector = {"label": f"{LABEL}={name}"}
    found = [f"service {s.name}" for s in engine.services.list(filters=selector)]
    found += [f"secret {s.name}" for s in engine.secrets.list(filters=selector)]
    found += [f"volume {v.name}" for v in engine.volumes.list(filters=selector)]
    found += [f"container {c.name}" for c in engine.containers.list(all=True, filters=selector)]
    return found


def _slots(engine: Any, cluster: Cluster) -> set[int]:
    service = engine.services.get(service_name(cluster.name, Role.PEER))
    return {
        int(t["Slot"])
        for t in service.tasks(filters={"desired-state": "running"})
        if t["Status"]["State"] == "running"
    }


def test_ten_peers_form_with_curve_and_the_swarm_node_in_status(cluster: Cluster) -> None:
    status = cluster.status()
    assert [n["index"] for n in status["nodes"]] == list(range(1, PEERS + 1))
    assert all(n["health"] == "up" and n["host"] for n in status["nodes"])
    assert cluster.state.curve_key is not None


def test_dhtctl_store_and_get_through_the_supervisor(cluster: Cluster) -> None:
    env = {**os.environ, "DHT_STATE_DIR": str(cluster.root), **FREE_PORTS_ENV}
    stored = run_cli(
        env, "-m", "control", "--cluster", cluster.name, "--node", "3", "store", "sw-k", "sw-v"
    )
    assert stored.returncode == 0, stored.stderr
    got = run_cli(env, "-m", "control", "--cluster", cluster.name, "--node", "9", "get", "sw-k")
    assert got.returncode == 0, got.stderr
    assert "sw-v" in got.stdout


def test_clients_without_the_key_get_nothing(cluster: Cluster) -> None:
    state = cluster.state
    node = state.node(5)
    assert node is not None
    assert not node.control.startswith("tcp://127.0.0.1:0")
    assert not plain_request_answered(state.front)
    assert not plain_request_answered(node.control)
    assert not plain_subscriber_hears(node.events)
    assert not plain_subscriber_hears(state.events)


def test_a_killed_peer_comes_back_in_its_slot_with_its_node_id(cluster: Cluster) -> None:
    before = cluster.node(4).id()
    restarts = cluster.restarts(4)
    cluster.kill(4)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = next(n for n in cluster.status()["nodes"] if n["index"] == 4)
        if entry["restarts"] > restarts and entry["health"] == "up":
            break
        time.sleep(0.5)
    else:
        raise AssertionError("peer 4 was not restarted by Swarm within 60 s")
    assert cluster.node(4).id() == before
    assert cluster.node(4).get("sw-k").value == b"sw-v"


def test_scale_up_then_down_follows_the_slots(engine: Any, cluster: Cluster) -> None:
    cluster.scale(MAX_PEERS, timeout_s=120)
    assert cluster.nodes == list(range(1, MAX_PEERS + 1))
    assert _slots(engine, cluster) == set(range(1, MAX_PEERS + 1))
    cluster.scale(8, timeout_s=120)
    assert cluster.nodes == list(range(1, 9))
    assert _slots(engine, cluster) == set(range(1, 9))
    assert cluster.node(8).get("sw-k").value == b"sw-v"
