"""The full scenario with real nodes on the process backend (25 peers; slow).

Runs ``orchestrate.py all --peers 25 --backend process`` with an isolated state dir and free
ports, then drives the cluster through the Python API and ``dhtctl`` like a user would.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.cluster import Cluster
from supervisor.state import load_state, pid_alive
from tests.support.cli import FREE_PORTS_ENV, run_cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PEERS = 25
CLUSTER = "e2e"
SEED = int(os.environ.get("E2E_SEED", str(random.randrange(1 << 30))))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("state")
    environ = {
        **os.environ,
        "DHT_STATE_DIR": str(state),
        **FREE_PORTS_ENV,
        "DHTCTL_CLUSTER": CLUSTER,
    }
    environ.pop("DHT_NODE_COMMAND", None)
    environ.pop("DHT_SIGNALING_COMMAND", None)
    up = run_cli(
        environ,
        "orchestrate.py",
        *("all", "--peers", str(PEERS), "--backend", "process", "--cluster", CLUSTER),
        *("--timeout", "240"),
        timeout=300,
    )
    try:
        assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
        yield environ
    finally:
        run_cli(environ, "orchestrate.py", "down", "--cluster", CLUSTER, timeout=120)


@pytest.fixture(scope="module")
def cluster(env: dict[str, str]) -> Iterator[Cluster]:
    c = Cluster.attach(CLUSTER, state_dir=env["DHT_STATE_DIR"])
    yield c
    c.close()


def dhtctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, "-m", "control", *args, timeout=90)


def test_scenario(env: dict[str, str], cluster: Cluster) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    keys = {f"key-{i}": rng.randbytes(32) for i in range(100)}
    for key, value in keys.items():
        cluster.node(rng.randint(1, PEERS)).store(key, value)
    misses = [k for k, v in keys.items() if cluster.node(rng.randint(1, PEERS)).get(k).value != v]
    assert misses == []

    watch = subprocess.Popen(
        [sys.executable, "-m", "control", "watch", "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let the SUB connect before the store
        stored = dhtctl(env, "--node", "7", "store", "k", "v")  # the spelling
        assert stored.returncode == 0, stored.stderr
        got = dhtctl(env, "get", "k", "--node", "3")  # options after the arguments work too
        assert got.returncode == 0, got.stderr
        assert "v" in got.stdout
        deadline = time.monotonic() + 30
        seen = False
        assert watch.stdout is not None
        while time.monotonic() < deadline and not seen:
            line = watch.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            payload = event.get("payload", {})
            seen = event.get("topic") == "record.stored" and payload.get("index") == 7
        assert seen, "dhtctl watch did not show record.stored from node 7"
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            watch.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watch.kill()
            watch.wait()

    # The supervisor's Prometheus endpoint exposes every peer (node.stats arrive every 5 s).
    import urllib.request

    def scrape() -> str:
        with urllib.request.urlopen(cluster.state.metrics, timeout=5) as response:
            return str(response.read().decode())

    deadline = time.monotonic() + 30
    text = scrape()
    while time.monotonic() < deadline and "dht_cluster_nodes_up 25.0" not in text:
        time.sleep(0.5)
        text = scrape()
    assert "dht_cluster_nodes_up 25.0" in text
    for i in range(1, PEERS + 1):
        assert f'dht_node_routing_table_size{{index="{i}"}}' in text

    state = cluster.state
    victims = rng.sample(range(1, PEERS + 1), 5)
    before = {i: (state.node(i).ref, state.node(i).restarts) for i in victims}  # type: ignore[union-attr]
    since = cluster.event_count()
    for i in victims:
        os.kill(int(before[i][0]), signal.SIGKILL)  # type: ignore[arg-type]
    for i in victims:
        cluster.wait_restarted(i, timeout_s=120, since=since)
    after = cluster.state
    for i in victims:
        record = after.node(i)
        assert record is not None
        assert record.ref != before[i][0]
        assert record.restarts == before[i][1] + 1
    misses = [k for k, v in keys.items() if cluster.node(rng.randint(1, PEERS)).get(k).value != v]
    assert misses == []


def test_down_leaves_nothing(env: dict[str, str], cluster: Cluster) -> None:
    state = load_state(CLUSTER, Path(env["DHT_STATE_DIR"]))
    assert state is not None
    pids = [int(n.ref) for n in state.nodes if n.ref]
    pids += [p for p in (state.supervisor_pid, int(state.signaling_ref or 0)) if p]
    down = run_cli(env, "orchestrate.py", "down", "--cluster", CLUSTER, timeout=120)
    assert down.returncode == 0, down.stderr
    assert [p for p in pids if pid_alive(p)] == []
