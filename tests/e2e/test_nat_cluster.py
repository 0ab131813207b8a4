"""Clusters behind NATs (``Cluster.up(lab="nat")``): the DHT forms, every get succeeds, and
each link's path is the one its NAT pairing allows; ``down`` leaves nothing behind.

* 6 peers behind endpoint-independent NATs: every link hole-punched (srflx).
* 6 peers behind symmetric NATs: every link relayed through the lab's coturn.
* EIM, symmetric and 2 peers on the wan: host / srflx / relay as the pairing dictates.

Marker ``slow``. Needs root, iproute2, nftables and coturn: skips without them, fails under
``CI=true``.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import natlab
from supervisor.cluster import Cluster
from supervisor.errors import CommandFailed
from supervisor.lab_cluster import lab_directory
from tests.support.natlab import leftovers, require_lab, root_ruleset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

UP_TIMEOUT_S = 90.0


def expected_path(a: natlab.NatKind, b: natlab.NatKind) -> str:
    if a is natlab.NatKind.WAN and b is natlab.NatKind.WAN:
        return "host"
    both_behind = natlab.NatKind.WAN not in (a, b)
    if both_behind and natlab.NatKind.SYMMETRIC in (a, b):
        return "relay"
    return "srflx"


@pytest.fixture
def lab_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    require_lab()
    nat: str = request.param
    before = root_ruleset()
    kinds = natlab.parse_kinds(nat, len(nat.split(",")) if "," in nat else 6)
    cluster = Cluster.up(
        len(kinds),
        name=f"nat{tmp_path.name[-12:]}".replace("_", "-"),
        state_dir=tmp_path,
        lab="nat",
        nat=nat,
        node_args=("--stats-interval", "1"),
        timeout_s=UP_TIMEOUT_S,
    )
    directory = lab_directory(tmp_path / cluster.name)
    tag = natlab.lab_tag(directory)
    try:
        yield cluster
    finally:
        cluster.down()
        assert leftovers(tag, directory) == [], "down left namespaces or coturn behind"
        assert root_ruleset() == before


def check(cluster: Cluster, kinds: list[natlab.NatKind]) -> dict[str, int]:
    """Every get succeeds on every node, every link has its expected path; the path counts."""
    ids = {cluster.node(i).id(): i for i in range(1, len(kinds) + 1)}
    cluster.node(1).store("nat-key", b"behind a NAT")
    misses = [
        i
        for i in range(2, len(kinds) + 1)
        if cluster.node(i).get("nat-key").value != b"behind a NAT"
    ]
    assert misses == []
    counts: dict[str, int] = {}
    for i in range(1, len(kinds) + 1):
        peers = cluster.node(i).peers()
        assert peers, f"node {i} has no links"
        for p in peers:
            j = ids[p["id"]]
            want = expected_path(kinds[i - 1], kinds[j - 1])
            assert p["path"] == want, f"link {i}-{j} ({kinds[i - 1]}-{kinds[j - 1]}): {p}"
            counts[want] = counts.get(want, 0) + 1
        stats = cluster.node(i).stats()
        assert sum(stats["link_paths"].values()) == len(peers)
    return counts


def prometheus_positive(cluster: Cluster, series: str, timeout_s: float = 15.0) -> bool:
    """Whether the supervisor's Prometheus text shows ``series`` above 0 within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(cluster.state.metrics, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(series + " ") and float(line.split()[-1]) > 0:
                    return True
        time.sleep(0.5)
    return False


@pytest.mark.parametrize("lab_cluster", ["eim"], indirect=True)
def test_eim_nats_hole_punch_every_link(lab_cluster: Cluster) -> None:
    counts = check(lab_cluster, natlab.parse_kinds("eim", 6))
    assert set(counts) == {"srflx"}
    assert prometheus_positive(lab_cluster, 'dht_node_links{index="1",path="srflx"}')


@pytest.mark.parametrize("lab_cluster", ["symmetric"], indirect=True)
def test_symmetric_nats_fall_back_to_the_relay(lab_cluster: Cluster) -> None:
    counts = check(lab_cluster, natlab.parse_kinds("symmetric", 6))
    assert set(counts) == {"relay"}
    # A crashed peer is restarted inside its namespace and reconnects through the relay.
    lab_cluster.kill(3)
    lab_cluster.wait_restarted(3, timeout_s=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not lab_cluster.node(3).peers():
        time.sleep(0.5)
    assert lab_cluster.node(3).get("nat-key").value == b"behind a NAT"
    assert {p["path"] for p in lab_cluster.node(3).peers()} == {"relay"}


MIX = "eim,symmetric,eim,symmetric,wan,wan"


@pytest.mark.parametrize("lab_cluster", [MIX], indirect=True)
def test_a_mix_with_wan_peers_takes_every_kind_of_path(lab_cluster: Cluster) -> None:
    counts = check(lab_cluster, natlab.parse_kinds(MIX, 6))
    assert set(counts) == {"host", "srflx", "relay"}


@pytest.mark.parametrize("lab_cluster", ["symmetric,symmetric,wan"], indirect=True)
def test_with_turn_stopped_symmetric_peers_fail_to_dial_and_say_why(lab_cluster: Cluster) -> None:
    target = lab_cluster.node(2).id()
    assert natlab.stop_turn(lab_directory(lab_cluster.root / lab_cluster.name))
    node = lab_cluster.node(1)
    node.disconnect(target)
    started = time.monotonic()
    with pytest.raises(CommandFailed) as raised:
        node.connect(target)
    assert time.monotonic() - started < 15.0  # bounded by the dial timeout: nothing hangs
    assert "STUN/TURN servers unreachable" in str(raised.value)
