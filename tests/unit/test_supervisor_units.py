"""Pure pieces of the supervisor: state file round trip, formation rule, envelopes, ports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control.codec import pack
from control.errors import CommandError
from control.schema import parse_request
from control.server import decode_body, split_envelope
from node import tunables
from peer.serve import RESOLVED_ENV, Options
from supervisor.cluster import formation, status_table
from supervisor.errors import StateError
from supervisor.ports import pick_port, port_is_free
from supervisor.spec import (
    BROWSER_COMMAND,
    NODE_COMMAND,
    WEB_DIR,
    Backend,
    SupervisorConfig,
    argv_value,
    browser_spec,
    formed_threshold,
    node_spec,
    signaling_spec,
)
from supervisor.state import ClusterState, NodeRecord, load_state, save_state, state_path


def test_state_round_trip_one_name_per_key(tmp_path: Path) -> None:
    state = ClusterState(
        cluster="c1",
        backend="process",
        supervisor_pid=42,
        front="tcp://127.0.0.1:1",
        events="tcp://127.0.0.1:2",
        metrics="http://127.0.0.1:3/metrics",
        signaling="ws://127.0.0.1:4",
        nodes=(
            NodeRecord(
                index=1,
                control="tcp://127.0.0.1:5",
                events="tcp://127.0.0.1:6",
                id="ab" * 32,
                ref="99",
                restarts=2,
            ),
        ),
    )
    save_state(state, tmp_path)
    assert load_state("c1", tmp_path) == state
    raw = json.loads(state_path("c1", tmp_path).read_text())
    assert (raw["front"], raw["events"]) == (state.front, state.events)
    assert set(raw) == set(ClusterState.__dataclass_fields__)  # no alias keys
    assert load_state("absent", tmp_path) is None


def test_corrupt_state_is_a_clear_error(tmp_path: Path) -> None:
    path = state_path("bad", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        load_state("bad", tmp_path)


@pytest.mark.parametrize(("peers", "threshold"), [(1, 0), (2, 1), (5, 4), (9, 8), (25, 8)])
def test_formed_threshold(peers: int, threshold: int) -> None:
    assert formed_threshold(peers) == threshold


def test_formation_counts_only_up_nodes_at_threshold() -> None:
    status = {
        "nodes": [
            {"index": 1, "health": "up", "rt": 8},
            {"index": 2, "health": "up", "rt": 7},
            {"index": 3, "health": "starting", "rt": None},
            {"index": 4, "health": "up", "rt": 12},
        ]
    }
    assert formation(status, 25) == (2, 8)
    table = status_table(status)
    assert table.splitlines()[0].split() == [
        "node",
        "id",
        "control",
        "peers",
        "rt",
        "restarts",
        "health",
    ]


def test_parse_request_accepts_node_selector_and_rejects_garbage() -> None:
    body = pack({"v": 1, "id": "x", "cmd": "get", "args": {"key": "k"}, "node": 3})
    req = parse_request(decode_body([body]))
    assert (req.id, req.cmd, dict(req.args), req.node) == ("x", "get", {"key": "k"}, 3)
    with pytest.raises(CommandError) as err:
        parse_request(decode_body([pack({"v": 1, "id": 5, "cmd": ""})]))
    assert err.value.code == "bad_request"
    with pytest.raises(CommandError) as err:
        decode_body([body, b"extra"])
    assert err.value.code == "bad_request"


def test_split_envelope_req_and_dealer() -> None:
    assert split_envelope([b"id", b"", b"body"]) == ([b"id", b""], [b"body"])
    assert split_envelope([b"id", b"body"]) == ([b"id"], [b"body"])
    assert split_envelope([b"hop", b"id", b"", b"body"]) == ([b"hop", b"id", b""], [b"body"])


def test_pick_port_never_repeats_and_skips_taken() -> None:
    taken: set[int] = set()
    ports = [pick_port(0, taken) for _ in range(5)]
    assert len(set(ports)) == 5
    again = pick_port(ports[0], taken)  # already handed out: a different one
    assert again not in ports
    assert not port_is_free(0)


def test_node_spec_command_line(tmp_path: Path) -> None:
    cfg = SupervisorConfig("c", 3, Backend.PROCESS, tmp_path, node_args=("--k", "8"))
    spec = node_spec(cfg, 2, "ws://127.0.0.1:3000", "tcp://127.0.0.1:7", "tcp://127.0.0.1:8")
    assert list(spec.argv) == [
        *NODE_COMMAND,
        "--signaling",
        "ws://127.0.0.1:3000",
        "--data-dir",
        str(tmp_path / "c" / "nodes" / "2"),
        "--control",
        "tcp://127.0.0.1:7",
        "--events",
        "tcp://127.0.0.1:8",
        "--ice-address",
        "127.0.0.1",
        "--k",
        "8",
    ]
    resolved = Options.from_json(spec.env[RESOLVED_ENV])  # the node skips its own parse
    assert (resolved.k, resolved.data_dir, resolved.control, resolved.ice_addresses) == (
        8,
        str(tmp_path / "c" / "nodes" / "2"),
        "tcp://127.0.0.1:7",
        ["127.0.0.1"],
    )
    bad = SupervisorConfig("c", 3, Backend.PROCESS, tmp_path, node_args=("--k", "zero"))
    assert RESOLVED_ENV not in node_spec(bad, 2, "ws://x", "tcp://a:1", "tcp://b:2").env
    docker = node_spec(SupervisorConfig("c", 3, Backend.DOCKER, tmp_path), 2, "ws://x", "a", "b")
    assert RESOLVED_ENV not in docker.env
    assert (docker.data_dir, docker.argv[docker.argv.index("--data-dir") + 1]) == (
        "dht-c-2",
        "/data",
    )


def test_node_settings_reach_every_node_and_bad_ones_are_refused_up_front(tmp_path: Path) -> None:
    args = tunables.node_args({"repair_interval_s": 5, "ban_s": 7.5})
    assert args == ("--set", "repair_interval_s=5.0", "--set", "ban_s=7.5")
    assert tunables.node_args(["max_records=9"]) == ("--set", "max_records=9")
    cfg = SupervisorConfig("c", 3, Backend.PROCESS, tmp_path, node_args=args)
    spec = node_spec(cfg, 1, "ws://127.0.0.1:3000", "tcp://127.0.0.1:7", "tcp://127.0.0.1:8")
    resolved = Options.from_json(spec.env[RESOLVED_ENV])
    assert resolved.overrides == {"repair_interval_s": 5.0, "ban_s": 7.5}
    for bad in ({"no_such": 1}, {"ban_s": -1}, ["ban_s"]):
        with pytest.raises(ValueError, match=r"ban_s|no_such"):
            tunables.node_args(bad)


def test_browser_members_run_the_bridge_and_the_signaling_server_serves_web(
    tmp_path: Path,
) -> None:
    cfg = SupervisorConfig("c", 3, Backend.PROCESS, tmp_path, browser_peers=2)
    spec = browser_spec(cfg, 4, "ws://127.0.0.1:3000", "tcp://127.0.0.1:7", "tcp://127.0.0.1:8")
    assert tuple(spec.argv[: len(BROWSER_COMMAND)]) == BROWSER_COMMAND
    flags = {f: argv_value(spec.argv, f) for f in ("--signaling", "--data-dir", "--events")}
    assert flags == {
        "--signaling": "ws://127.0.0.1:3000",
        "--data-dir": str(tmp_path / "c" / "nodes" / "4"),
        "--events": "tcp://127.0.0.1:8",
    }
    assert "--ice-address" not in spec.argv
    assert spec.log_path == str(tmp_path / "c" / "logs" / "browser-4.log")
    assert list(signaling_spec(cfg, 3000).argv)[-2:] == ["--web", str(WEB_DIR)]
    assert (WEB_DIR / "peer.html").is_file()
    plain = SupervisorConfig("c", 3, Backend.PROCESS, tmp_path)
    assert "--web" not in signaling_spec(plain, 3000).argv
    with pytest.raises(ValueError, match="process backend"):
        SupervisorConfig("c", 3, Backend.DOCKER, tmp_path, browser_peers=1)


def test_status_table_shows_the_kind_only_in_mixed_clusters() -> None:
    node = {"index": 1, "id": "ab" * 32, "health": "up", "peers": 1, "rt": 1}
    plain = status_table({"nodes": [node]})
    assert "kind" not in plain
    mixed = status_table({"nodes": [node, {**node, "index": 2, "kind": "browser"}]})
    header, _, browser_row = mixed.splitlines()[:3]
    assert header.split()[-1] == "kind"
    assert browser_row.split()[-1] == "browser"
