"""A mixed cluster: 10 Python peers and 3 headless-Chromium peers under one supervisor (slow).

The browser peers are members like the others (``supervisor.browser_peer``): the ``Cluster``
API drives them, ``status`` lists them with kind ``browser``, their events reach the
supervisor's stream, and ``down`` leaves no chromium process behind.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator

import pytest

from supervisor.browser_peer import PID_FILE
from supervisor.chromium import group_alive
from supervisor.cluster import Cluster
from supervisor.state import pid_alive

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(900)]

PYTHON_PEERS = 10
BROWSER_PEERS = 3
KEYS = 20
GETS = 100


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    c = Cluster.up(
        peers=PYTHON_PEERS,
        browser_peers=BROWSER_PEERS,
        backend="process",
        state_dir=tmp_path_factory.mktemp("state"),
        name="mixed",
        timeout_s=600,
    )
    try:
        yield c
    finally:
        c.down()


def browsers() -> list[int]:
    return list(range(PYTHON_PEERS + 1, PYTHON_PEERS + BROWSER_PEERS + 1))


def test_status_lists_the_browser_peers(cluster: Cluster) -> None:
    nodes = cluster.status()["nodes"]
    kinds = {n["index"]: n["kind"] for n in nodes}
    assert kinds == {i: "node" for i in range(1, PYTHON_PEERS + 1)} | dict.fromkeys(
        browsers(), "browser"
    )
    for n in nodes:
        assert n["health"] == "up"
        assert isinstance(n["id"], str)
        assert len(n["id"]) == 64
    state_ids = {n.index: n.id for n in cluster.state.nodes}
    assert all(state_ids[i] for i in state_ids), f"cluster.json has null ids: {state_ids}"


def test_a_mixed_cluster_serves_every_get(cluster: Cluster) -> None:
    members = list(range(1, PYTHON_PEERS + BROWSER_PEERS + 1))
    writers = itertools.cycle([*browsers(), 1, 4, 7])
    values = {}
    for i in range(KEYS):
        key, value = f"mixed-{i}", f"value {i} ✓"
        cluster.node(next(writers)).store(key, value)
        values[key] = value.encode()
    served = 0
    readers = itertools.cycle(members[::-1])
    keys = itertools.cycle(values)
    for _ in range(GETS):
        key, reader = next(keys), next(readers)
        got = cluster.node(reader).get(key)
        assert got.value == values[key], f"node {reader} got {got.value!r} for {key}"
        served += 1
    assert served == GETS


def test_a_browser_announces_and_a_python_node_finds_it(cluster: Cluster) -> None:
    browser = cluster.node(browsers()[0])
    assert browser.announce("mixed-topic")["ok"]
    found = {p["id"] for p in cluster.node(2).lookup("mixed-topic")}
    assert browser.id() in found
    cluster.node(3).announce("python-topic")
    assert cluster.node(3).id() in {p["id"] for p in browser.lookup("python-topic")}


def test_browser_events_reach_the_supervisor_stream(cluster: Cluster) -> None:
    wanted = set(browsers())
    _, found = cluster.event_log.wait_for(
        lambda topic, payload: topic == "node.stats" and payload.get("index") in wanted, 0, 30.0
    )
    assert found, "no node.stats from a browser peer within 30 s"
    assert found[0]["kind"] == "browser"


def test_down_leaves_no_browser_behind(tmp_path_factory: pytest.TempPathFactory) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    c = Cluster.up(
        peers=2,
        browser_peers=1,
        backend="process",
        state_dir=tmp_path_factory.mktemp("state-down"),
        name="mixed-down",
        timeout_s=600,
    )
    try:
        pid_file = c.root / c.name / "nodes" / "3" / PID_FILE
        pid = int(pid_file.read_text())
        assert pid_alive(pid)
    finally:
        c.down()
    deadline = time.monotonic() + 10
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(pid), "a chromium process survived `down`"
