"""``orchestrate.py up --lab nat`` and ``dhtctl`` against a lab cluster: the supervisor reaches
the peers over ``ipc://``, ``dhtctl peers`` shows each link's path, a lab cluster refuses to
grow, ``down`` removes the lab; bad ``--lab``/``--nat`` values are usage errors (exit 2).

Marker ``slow``. Needs root, iproute2, nftables and coturn for the cluster part: skips without
them, fails under ``CI=true``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from supervisor import natlab
from supervisor.lab_cluster import lab_directory
from tests.support.cli import FREE_PORTS_ENV, run_cli
from tests.support.natlab import leftovers, require_lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CLUSTER = "natcli"


def environ(state: Path) -> dict[str, str]:
    env = {**os.environ, "DHT_STATE_DIR": str(state), **FREE_PORTS_ENV, "DHTCTL_CLUSTER": CLUSTER}
    env.pop("DHT_NODE_COMMAND", None)
    env.pop("DHT_SIGNALING_COMMAND", None)
    return env


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--lab", "moon"), "the only lab is 'nat'"),
        (("--lab", "nat", "--nat", "cone"), "comma list"),
        (("--lab", "nat", "--nat", "eim,wan"), "2 kinds for 3 peers"),
        (("--lab", "nat", "--backend", "docker"), "process backend only"),
    ],
)
def test_bad_lab_options_are_usage_errors(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    done = run_cli(environ(tmp_path), "orchestrate.py", "up", "--peers", "3", *flags)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "default" / "lab").exists()


def test_orchestrate_and_dhtctl_drive_a_lab_cluster(tmp_path: Path) -> None:
    require_lab()
    env = environ(tmp_path)
    up = run_cli(
        env,
        "orchestrate.py",
        *("up", "--peers", "3", "--cluster", CLUSTER, "--timeout", "90"),
        *("--lab", "nat", "--nat", "eim,symmetric,wan"),
        timeout=150,
    )
    directory = lab_directory(tmp_path / CLUSTER)
    tag = natlab.lab_tag(directory)
    try:
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        assert "ipc://" in up.stdout
        peers = run_cli(env, "-m", "control", "peers", "--node", "1", "--json")
        assert peers.returncode == 0, peers.stderr
        paths = {p["path"] for p in json.loads(peers.stdout)["peers"]}
        assert paths <= {"relay", "srflx"}  # EIM to symmetric: relay; EIM to wan: srflx
        assert paths
        scale = run_cli(env, "orchestrate.py", "scale", "--peers", "4", "--cluster", CLUSTER)
        assert scale.returncode == 1
        assert "cannot grow" in scale.stderr + scale.stdout
    finally:
        down = run_cli(env, "orchestrate.py", "down", "--cluster", CLUSTER, timeout=120)
    assert down.returncode == 0, down.stderr
    assert leftovers(tag, directory) == []
