"""``orchestrate.py`` and ``Cluster`` end to end with the process launcher and fake members
(``python -m tests.support.fake_node fake-node``), so they run without the real DHT node."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.cluster import Cluster
from supervisor.errors import KeyNotFound
from supervisor.state import load_state, pid_alive
from tests.support.cli import FREE_PORTS_ENV, run_cli

FAKE_ENV = {
    "DHT_NODE_COMMAND": "python -m tests.support.fake_node fake-node --stats-interval 0.5",
    "DHT_SIGNALING_COMMAND": "python -m tests.support.fake_node fake-signaling",
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    shared = tmp_path / "shared"
    shared.mkdir()
    environ = {
        **os.environ,
        **FAKE_ENV,
        "FAKE_SHARED_DIR": str(shared),
        "DHT_STATE_DIR": str(tmp_path / "state"),
        **FREE_PORTS_ENV,
    }
    yield environ
    run_cli(environ, "orchestrate.py", "down", "--cluster", "clitest", timeout=60)


def orchestrate(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_cli(env, "orchestrate.py", *args, timeout=timeout)


@pytest.mark.parametrize("peers", ["0", "-3", "abc", "1.5"])
def test_bad_peers_is_usage_error(env: dict[str, str], peers: str) -> None:
    result = orchestrate(env, "up", "--peers", peers, "--backend", "process")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--peers" in lines[0]
    assert "positive integer" in lines[0]


def test_up_without_peers_is_usage_error(env: dict[str, str]) -> None:
    result = orchestrate(env, "up", "--backend", "process")
    assert result.returncode == 2
    assert "--peers" in result.stderr


def test_down_of_nothing_is_fine(env: dict[str, str]) -> None:
    result = orchestrate(env, "down", "--cluster", "clitest")
    assert result.returncode == 0
    assert "nothing to stop" in result.stdout


def test_status_of_nothing_fails_clearly(env: dict[str, str]) -> None:
    result = orchestrate(env, "status", "--cluster", "clitest")
    assert result.returncode == 1
    assert "not running" in result.stderr


def test_up_status_second_up_down(env: dict[str, str]) -> None:
    up = orchestrate(env, "up", "--peers", "3", "--backend", "process", "--cluster", "clitest")
    assert up.returncode == 0, up.stderr
    assert "formed" in up.stderr
    table = up.stdout.splitlines()
    assert table[0].split()[:2] == ["node", "id"]
    assert [line.split()[0] for line in table[1:4]] == ["1", "2", "3"]
    state = load_state("clitest", Path(env["DHT_STATE_DIR"]))
    assert state is not None
    assert state.supervisor_pid is not None
    assert len(state.nodes) == 3
    pids = [int(n.ref) for n in state.nodes if n.ref] + [int(state.signaling_ref or 0)]
    assert all(pid_alive(p) for p in [state.supervisor_pid, *pids])

    again = orchestrate(env, "up", "--peers", "3", "--backend", "process", "--cluster", "clitest")
    assert again.returncode == 1
    assert "already running" in again.stderr

    status = orchestrate(env, "status", "--cluster", "clitest")
    assert status.returncode == 0
    assert status.stdout.count(" up") >= 3

    # dhtctl finds the supervisor through the state file the supervisor wrote.
    rt = run_cli(
        env, "-m", "control", "rt", "--node", "2", "--cluster", "clitest", "--json", timeout=60
    )
    assert rt.returncode == 0, rt.stderr
    assert json.loads(rt.stdout) == {"size": 50, "buckets_used": 1}

    logs = orchestrate(env, "logs", "--cluster", "clitest", "--node", "2")
    assert logs.returncode == 0
    assert "fake node" in logs.stdout

    down = orchestrate(env, "down", "--cluster", "clitest")
    assert down.returncode == 0
    assert "stopped" in down.stdout
    assert not any(pid_alive(p) for p in [state.supervisor_pid, *pids])
    assert load_state("clitest", Path(env["DHT_STATE_DIR"])) is None


def test_cluster_api_restarts_crashed_process(env: dict[str, str], tmp_path: Path) -> None:
    with Cluster.up(
        peers=3,
        env={**FAKE_ENV, "FAKE_SHARED_DIR": env["FAKE_SHARED_DIR"]},
        state_dir=tmp_path / "api",
    ) as c:
        assert c.nodes == [1, 2, 3]
        assert c.node(2).store("k", "v")["acks"] >= 1
        assert c.node(3).get("k").value == b"v"
        with pytest.raises(KeyNotFound):
            c.node(1).get("missing")
        stored = c.events(topic="record.stored", timeout=5, predicate=lambda p: p.get("key") == "k")
        assert [e["index"] for e in stored] == [2]
        node_id = c.node(2).id()
        old = c.state.node(2)
        assert old is not None
        assert old.ref is not None
        os.kill(int(old.ref), 9)  # a crash, not a request
        c.wait_restarted(2, timeout_s=30)
        new = c.state.node(2)
        assert new is not None
        assert new.ref != old.ref
        assert new.restarts == 1
        assert c.node(2).id() == node_id  # same data dir, same identity
        assert c.node(2).get("k").value == b"v"
        c.node(1).join("chat", port=4000)
        first = next(c.node(1).discovered("chat", timeout_s=5))
        assert first["topic"] == "chat"
        pids = [int(n.ref) for n in c.state.nodes if n.ref]
        sup_pid = c.state.supervisor_pid
    assert not any(pid_alive(p) for p in [*pids, sup_pid])
