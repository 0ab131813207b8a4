"""Two swarm hosts on one machine (``tests.support.twohosts``): a 12-peer cluster spread over
both forms; a value stored through a peer of host A is read through a peer of host B; when host
B's engine stops, host A's peers evict B's peers and keep serving; ``down`` leaves nothing on A.

Root only (network namespaces, two dockerd); CI runs it. The supervisor, ``orchestrate.py`` and
``dhtctl`` run inside host A's network namespace, like an operator logged in on the manager.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.state import load_state
from tests.support.cli import FREE_PORTS_ENV, REPO, require_engine
from tests.support.twohosts import TwoHosts, missing_requirements

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PEERS = 12
CLUSTER = "two-hosts"
EVICT_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def lab() -> Iterator[TwoHosts]:
    reason = missing_requirements()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    require_engine()  # the image comes from the engine of DOCKER_HOST
    with TwoHosts() as lab:
        yield lab
    assert lab.leftovers() == [], "the two-host lab left something behind"


@pytest.fixture(scope="module")
def env(lab: TwoHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("two-hosts-state")
    environ = {**os.environ, "DHT_STATE_DIR": str(state), **FREE_PORTS_ENV}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), environ.get("PYTHONPATH")) if p)
    up = lab.run_on_a(
        [
            *(sys.executable, "orchestrate.py", "up", "--backend", "swarm"),
            *("--peers", str(PEERS), "--cluster", CLUSTER, "--timeout", "180"),
        ],
        environ,
        timeout_s=240,
    )
    try:
        assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
        yield environ
    finally:
        down = lab.run_on_a(
            [sys.executable, "orchestrate.py", "down", "--cluster", CLUSTER], environ
        )
        assert down.returncode == 0, down.stderr
        label = f"label=dht.cluster={CLUSTER}"
        for kind in ("service", "secret", "volume"):
            assert lab.a.docker(kind, "ls", "-q", "--filter", label).strip() == "", kind
        assert lab.a.docker("ps", "-aq", "--filter", label).strip() == ""


def dhtctl(lab: TwoHosts, env: dict[str, str], *args: str) -> str:
    done = lab.run_on_a([sys.executable, "-m", "control", "--cluster", CLUSTER, *args], env)
    assert done.returncode == 0, f"dhtctl {' '.join(args)}: {done.stderr}"
    return done.stdout


def by_host(lab: TwoHosts, env: dict[str, str]) -> dict[str, dict[int, str]]:
    """Host address -> {peer index: node id}, from the state file."""
    state = load_state(CLUSTER, Path(env["DHT_STATE_DIR"]))
    assert state is not None
    hosts: dict[str, dict[int, str]] = {lab.a.address: {}, lab.b.address: {}}
    for node in state.nodes:
        address = node.control[len("tcp://") :].rpartition(":")[0]
        hosts.setdefault(address, {})[node.index] = node.id or ""
    return hosts


def contacts(lab: TwoHosts, env: dict[str, str], index: int) -> set[str]:
    dump = json.loads(dhtctl(lab, env, "--node", str(index), "--json", "dump"))
    return {c["id"] for bucket in dump["buckets"] for c in bucket["contacts"]}


def test_spread_store_on_a_get_on_b_then_b_goes_away(lab: TwoHosts, env: dict[str, str]) -> None:
    hosts = by_host(lab, env)
    on_a, on_b = hosts[lab.a.address], hosts[lab.b.address]
    assert len(on_a) + len(on_b) == PEERS
    assert len(on_a) >= PEERS // 3, hosts  # spread over both
    assert len(on_b) >= PEERS // 3, hosts

    a_peer, b_peer = min(on_a), min(on_b)
    dhtctl(lab, env, "--node", str(a_peer), "store", "across", "hosts")
    assert dhtctl(lab, env, "--node", str(b_peer), "get", "across").strip() == "hosts"

    gone = set(on_b.values())
    lab.b.stop_engine()
    deadline = time.monotonic() + EVICT_TIMEOUT_S
    remaining: dict[int, set[str]] = {}
    while time.monotonic() < deadline:
        remaining = {i: contacts(lab, env, i) & gone for i in on_a}
        if not any(remaining.values()):
            break
        time.sleep(2.0)
    assert not any(remaining.values()), f"A's peers still list B's peers: {remaining}"

    first, *others = sorted(on_a)
    assert dhtctl(lab, env, "--node", str(others[-1]), "get", "across").strip() == "hosts"
    dhtctl(lab, env, "--node", str(first), "store", "after", "b-left")
    assert dhtctl(lab, env, "--node", str(others[0]), "get", "after").strip() == "b-left"
