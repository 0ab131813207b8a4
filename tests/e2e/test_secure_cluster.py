"""``--secure`` on the process backend: CURVE everywhere, the key in the state dir, plain clients
get nothing and the node says so in its log."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.curve import CurveKeys
from supervisor.cluster import Cluster
from tests.support.cli import FREE_PORTS_ENV, run_cli
from tests.support.curve_probe import plain_request_answered, plain_subscriber_hears
from tests.support.procs import wait_for

pytestmark = pytest.mark.slow

PEERS = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("secure-state")
    with Cluster.up(PEERS, "process", state_dir=root, secure=True, timeout_s=120) as c:
        yield c


def test_the_key_is_in_the_state_dir_and_private(cluster: Cluster) -> None:
    path = cluster.state.curve_key
    assert path is not None
    assert Path(path).parent == cluster.root / cluster.name
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    CurveKeys.load(path)


def test_store_and_get_through_the_supervisor(cluster: Cluster) -> None:
    cluster.node(1).store("secure-k", b"secure-v")
    assert cluster.node(PEERS).get("secure-k").value == b"secure-v"


def test_dhtctl_reads_the_key_from_the_state_file(cluster: Cluster) -> None:
    env = {**os.environ, "DHT_STATE_DIR": str(cluster.root), **FREE_PORTS_ENV}
    env.pop("DHT_CURVE_KEY", None)
    done = run_cli(
        env, "-m", "control", "--cluster", cluster.name, "--node", "2", "get", "secure-k"
    )
    assert done.returncode == 0, done.stderr
    assert "secure-v" in done.stdout
    node = cluster.state.node(3)
    assert node is not None
    direct = run_cli(
        env, "-m", "control", "--cluster", cluster.name, "--endpoint", node.control, "id"
    )
    assert direct.returncode == 0, direct.stderr


def test_plain_clients_get_nothing_and_the_node_logs_it(cluster: Cluster) -> None:
    state = cluster.state
    assert not plain_request_answered(state.front)
    assert not plain_subscriber_hears(state.events)
    node = state.node(2)
    assert node is not None
    assert node.log_path is not None
    assert not plain_request_answered(node.control)
    assert not plain_subscriber_hears(node.events)
    log_path = Path(node.log_path)
    wait_for(
        lambda: "does not speak CURVE" in log_path.read_text(errors="replace"),
        5,
        "the node to log the refused client",
    )
