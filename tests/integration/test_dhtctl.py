"""dhtctl against a real control server over FakeNode (typer's CliRunner and subprocesses)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import zmq
from typer.testing import CliRunner

from control.cli import app
from control.cluster_state import ClusterState, save_state
from control.schema import Request
from control.server import ThreadedControlServer
from tests.support.fake_node import FakeNode
from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
PEER = FakeNode().peer_ids[0]
NODE_ID = FakeNode().node_id
LINE_TIMEOUT_S = 10.0

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DHTCTL_ENDPOINT", "DHTCTL_EVENTS", "DHTCTL_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DHT_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def node() -> Iterator[ThreadedControlServer]:
    with ThreadedControlServer(FakeNode(), node_id=NODE_ID) as srv:
        yield srv


def dhtctl(*args: str) -> Any:
    return runner.invoke(app, list(args), prog_name="dhtctl")


def test_store_then_get(node: ThreadedControlServer) -> None:
    ep = node.control_endpoint
    stored = dhtctl("store", "greeting", "hello wörld", "--endpoint", ep)
    assert stored.exit_code == 0, stored.output
    assert stored.stdout.startswith("stored greeting (")
    assert "3 acks, quorum 2" in stored.stdout
    got = dhtctl("get", "greeting", "--endpoint", ep)
    assert got.exit_code == 0
    assert got.stdout == "hello wörld\n"
    assert got.stderr == ""


def test_get_missing_exits_1_with_one_line(node: ThreadedControlServer) -> None:
    result = dhtctl("get", "greeting", "--endpoint", node.control_endpoint)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "dhtctl: key not found: greeting\n"


def test_get_json_shape(node: ThreadedControlServer) -> None:
    ep = node.control_endpoint
    assert dhtctl("store", "k", "hello", "--endpoint", ep).exit_code == 0
    doc = json.loads(dhtctl("get", "k", "--endpoint", ep, "--json").stdout)
    assert doc["value"] == {"base64": "aGVsbG8=", "utf8": "hello"}
    assert doc["key"] == "k"
    assert doc["publisher"] == NODE_ID
    assert set(doc) == {"key", "key_id", "value", "publisher", "ts", "hops", "duration_ms"}


def test_binary_value_json_has_null_utf8(node: ThreadedControlServer) -> None:
    api = node.server.api
    assert isinstance(api, FakeNode)
    api.records["bin"] = b"\xff\x00"
    doc = json.loads(dhtctl("get", "bin", "--endpoint", node.control_endpoint, "--json").stdout)
    assert doc["value"] == {"base64": "/wA=", "utf8": None}
    human = dhtctl("get", "bin", "--endpoint", node.control_endpoint)
    assert human.stdout == "base64:/wA=\n"


def test_remote_error_json_carries_details(node: ThreadedControlServer) -> None:
    result = dhtctl("store", "noquorum", "v", "--endpoint", node.control_endpoint, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["error"]["code"] == "quorum_not_met"
    assert doc["error"]["details"]["acks"] == 1
    assert result.stderr == "dhtctl: stored on 1 of 3 nodes, quorum is 2\n"


def test_tables(node: ThreadedControlServer) -> None:
    ep = node.control_endpoint
    peers = dhtctl("peers", "--endpoint", ep)
    assert peers.exit_code == 0
    lines = peers.stdout.splitlines()
    assert lines[0].split() == ["ID", "RTT", "MS", "CONNECTED", "S", "IN", "RT", "PATH"]
    assert len(lines) == 4
    assert lines[1].split()[0] == PEER
    ident = dhtctl("id", "--endpoint", ep)
    assert ident.stdout.splitlines()[0].split() == ["id", NODE_ID]
    ping = dhtctl("ping", PEER.upper(), "--endpoint", ep)
    assert ping.stdout == f"pong from {PEER} in 1.2 ms\n"
    helped = dhtctl("help", "--endpoint", ep)
    assert re.search(r"\nstore +KEY VALUE ", helped.stdout)
    announced = dhtctl("announce", "chat", "--port", "8080", "--meta", '{"v": 1}', "--endpoint", ep)
    assert announced.exit_code == 0
    looked = dhtctl("lookup", "chat", "--endpoint", ep, "--json")
    assert json.loads(looked.stdout)["peers"][0] == {
        "id": NODE_ID,
        "port": 8080,
        "meta": {"v": 1},
        "ts": 1_700_000_000_000,
    }


def test_unreachable_exits_3_fast() -> None:
    started = time.monotonic()
    result = dhtctl("get", "k", "--endpoint", f"tcp://127.0.0.1:{free_port()}")
    assert result.exit_code == 3
    assert time.monotonic() - started < 3.0
    assert result.stderr.startswith("dhtctl: no control server at tcp://127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def test_timeout_exits_3() -> None:
    ctx = zmq.Context.instance()
    silent = ctx.socket(zmq.ROUTER)
    silent.setsockopt(zmq.LINGER, 0)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        result = dhtctl("id", "--endpoint", f"tcp://127.0.0.1:{port}", "--timeout", "0.3")
    finally:
        silent.close(linger=0)
    assert result.exit_code == 3
    assert result.stderr == f"dhtctl: no reply from tcp://127.0.0.1:{port} within 0.3 s\n"


@pytest.mark.parametrize(
    "args",
    [
        ["get"],
        ["store", "only-key"],
        ["ping", "abc"],
        ["find", "g" * 64],
        ["announce", "t", "--meta", "{bad"],
        ["announce", "t", "--meta", "[1]"],
        ["announce", "t", "--port", "70000"],
        ["get", "k", "--node", "zero"],
        ["get", "k", "--node", "0"],
        ["get", "k", "--bogus"],
        ["frobnicate"],
        ["get", "k", "--endpoint", "not-an-endpoint"],
    ],
)
def test_usage_errors_exit_2(node: ThreadedControlServer, args: list[str]) -> None:
    result = dhtctl(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_debug_shows_traceback(node: ThreadedControlServer) -> None:
    result = dhtctl("get", "missing", "--endpoint", node.control_endpoint, "--debug")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.endswith("dhtctl: key not found: missing\n")


def cluster_state(name: str, front: str, events: str) -> ClusterState:
    """What the supervisor writes (dhtctl reads only the endpoints)."""
    return ClusterState(name, "process", 1, front, events, "", "ws://127.0.0.1:1")


def test_endpoint_resolution(
    node: ThreadedControlServer, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"tcp://127.0.0.1:{free_port()}"
    save_state(cluster_state("default", front=node.control_endpoint, events=dead), clean_env)
    assert dhtctl("rt").exit_code == 0  # from cluster.json
    monkeypatch.setenv("DHTCTL_ENDPOINT", dead)
    assert dhtctl("rt").exit_code == 3  # env beats cluster.json
    assert dhtctl("rt", "--endpoint", node.control_endpoint).exit_code == 0  # flag beats env
    monkeypatch.delenv("DHTCTL_ENDPOINT")
    missing = dhtctl("rt", "--cluster", "nope")
    assert missing.exit_code == 3
    assert "no cluster 'nope'" in missing.stderr
    save_state(cluster_state("other", front=dead, events=dead), clean_env)
    monkeypatch.setenv("DHTCTL_CLUSTER", "other")
    assert dhtctl("rt").exit_code == 3


class FakeSupervisor:
    """A control server whose dispatch answers like the supervisor front endpoint."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.srv = ThreadedControlServer(FakeNode(), dispatch=self.dispatch)

    async def dispatch(self, request: Request) -> Mapping[str, Any]:
        self.seen.append(request)
        if request.cmd == "cluster.status":
            return {
                "nodes": [
                    {
                        "index": 1,
                        "id": NODE_ID,
                        "control": "tcp://127.0.0.1:7000",
                        "peers": 2,
                        "rt": 2,
                        "restarts": 0,
                        "health": "ok",
                    },
                    {
                        "index": 2,
                        "id": PEER,
                        "control": "tcp://127.0.0.1:7002",
                        "peers": 1,
                        "rt": 1,
                        "restarts": 3,
                        "health": "down",
                    },
                ]
            }
        if request.node == "all":
            return {
                "results": {
                    "1": {"ok": True, "result": {"size": 2, "buckets_used": 1}},
                    "2": {
                        "ok": False,
                        "error": {"code": "node_unavailable", "message": "node 2 is down"},
                    },
                }
            }
        return {"size": 7, "buckets_used": 2}


@pytest.fixture
def supervisor() -> Iterator[FakeSupervisor]:
    sup = FakeSupervisor()
    sup.srv.start()
    yield sup
    sup.srv.close()


def test_node_flag_goes_into_the_envelope(supervisor: FakeSupervisor) -> None:
    ep = supervisor.srv.control_endpoint
    assert dhtctl("rt", "--endpoint", ep).exit_code == 0
    assert dhtctl("rt", "--node", "3", "--endpoint", ep).exit_code == 0
    assert [(r.cmd, r.node) for r in supervisor.seen] == [("rt", None), ("rt", 3)]


def test_node_all_prints_each_node_and_fails_if_one_failed(supervisor: FakeSupervisor) -> None:
    result = dhtctl("rt", "--node", "all", "--endpoint", supervisor.srv.control_endpoint)
    assert result.exit_code == 1
    assert "== node 1 ==" in result.stdout
    assert "size          2" in result.stdout
    assert result.stderr == "dhtctl: node 2: node 2 is down\n"


def test_cluster_status_table(supervisor: FakeSupervisor) -> None:
    result = dhtctl("cluster", "status", "--endpoint", supervisor.srv.control_endpoint)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["INDEX", "ID", "CONTROL", "PEERS", "RT", "RESTARTS", "HEALTH"]
    assert lines[2].split() == ["2", PEER, "tcp://127.0.0.1:7002", "1", "1", "3", "down"]
    doc = json.loads(
        dhtctl("cluster", "status", "--json", "--endpoint", supervisor.srv.control_endpoint).stdout
    )
    assert doc["nodes"][0]["health"] == "ok"


def test_cluster_status_on_a_plain_node_fails_cleanly(node: ThreadedControlServer) -> None:
    result = dhtctl("cluster", "status", "--endpoint", node.control_endpoint)
    assert result.exit_code == 1
    assert result.stderr == "dhtctl: unknown command 'cluster.status' (try 'help')\n"


# -- streaming commands in subprocesses (real Ctrl-C) ---------------------------------------


def spawn(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "control", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )


def read_line_while(proc: subprocess.Popen[bytes], publish: Any) -> bytes:
    """Publish repeatedly (PUB/SUB has no handshake) until the process prints a line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + LINE_TIMEOUT_S
    while time.monotonic() < deadline:
        publish()
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            return proc.stdout.readline()
    pytest.fail("no line from the subprocess")


def interrupt(proc: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=LINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err


def test_watch_json_lines_and_ctrl_c(node: ThreadedControlServer) -> None:
    proc = spawn("watch", "--json", "--topic", "peer.", "--endpoint", node.events_endpoint)
    try:

        def publish() -> None:
            node.publish("node.stats", {"x": 1})  # filtered out
            node.publish("peer.connected", {"peer": PEER})

        line = read_line_while(proc, publish)
        event = json.loads(line)
        assert event["topic"] == "peer.connected"
        assert event["payload"]["peer"] == PEER
        assert event["payload"]["node"] == NODE_ID
        assert isinstance(event["payload"]["ts"], int)
    finally:
        code, err = interrupt(proc)
    assert code == 130
    assert b"Traceback" not in err


def test_watch_filters_by_node_index(node: ThreadedControlServer) -> None:
    proc = spawn("watch", "--node", "2", "--endpoint", node.events_endpoint)
    try:

        def publish() -> None:
            node.publish("peer.connected", {"peer": PEER, "index": 1})
            node.publish("peer.disconnected", {"peer": PEER, "index": 2, "reason": "closed"})

        line = read_line_while(proc, publish).decode()
        assert f"[2] {NODE_ID[:8]} peer.disconnected peer={PEER[:8]} reason=closed" in line
    finally:
        code, _ = interrupt(proc)
    assert code == 130


def test_lookup_follow_joins_and_prints_peers(node: ThreadedControlServer) -> None:
    env_proc = subprocess.Popen(
        [sys.executable, "-m", "control", "lookup", "chat", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DHTCTL_ENDPOINT": node.control_endpoint,
            "DHTCTL_EVENTS": node.events_endpoint,  # resolution: env for both endpoints
        },
        cwd=ROOT,
    )
    try:
        assert env_proc.stdout is not None
        header = env_proc.stdout.readline().decode()
        assert header.startswith("following chat (")

        def publish() -> None:
            node.publish("topic.peer", {"topic": "other", "peer": NODE_ID, "port": 1, "meta": {}})
            node.publish(
                "topic.peer", {"topic": "chat", "peer": PEER, "port": 9000, "meta": {"a": 1}}
            )

        line = read_line_while(env_proc, publish).decode()
        assert line == f'+ {PEER} port=9000 meta={{"a": 1}}\n'
        api = node.server.api
        assert isinstance(api, FakeNode)
        assert api.joined == {"chat": {"port": None, "meta": None}}
    finally:
        code, _ = interrupt(env_proc)
    assert code == 130


def test_lookup_follow_events_flag(node: ThreadedControlServer) -> None:
    proc = spawn(
        "lookup",
        "chat",
        "--follow",
        "--json",
        "--endpoint",
        node.control_endpoint,
        "--events",
        node.events_endpoint,
    )
    try:

        def publish() -> None:
            node.publish("topic.peer_lost", {"topic": "chat", "peer": PEER, "reason": "left"})

        event = json.loads(read_line_while(proc, publish))
        assert event["topic"] == "topic.peer_lost"
        assert event["payload"]["reason"] == "left"
    finally:
        code, _ = interrupt(proc)
    assert code == 130
