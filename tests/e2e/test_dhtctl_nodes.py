"""`dhtctl` against real node processes (WebRTC between them, ZeroMQ to them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control.cli import app
from tests.support.procs import ProcCluster, free_port, proc_cluster

pytestmark = pytest.mark.slow

DHTCTL = [sys.executable, "-m", "control"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    with proc_cluster(tmp_path_factory.mktemp("dhtctl"), 3) as c:
        c.wait_formed(min_rt=2, timeout_s=60)
        yield c


def dhtctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DHT_STATE_DIR": "/nonexistent-dhtctl-test"}
    return subprocess.run(
        [*DHTCTL, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_store_on_one_get_on_another_and_watch_sees_it(cluster: ProcCluster) -> None:
    a, b = cluster.nodes[0], cluster.nodes[1]
    watch = subprocess.Popen(
        [*DHTCTL, "watch", "--json", "--endpoint", a.events, "--topic", "record."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, object]] = []
    seen = threading.Event()

    def read() -> None:
        assert watch.stdout is not None
        for line in watch.stdout:
            event = json.loads(line)
            lines.append(event)
            if event.get("payload", event).get("key") == "cli-key":  # type: ignore[union-attr]
                seen.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # ZeroMQ subscriptions take a moment to reach the publisher: store until seen.
        for _ in range(10):
            stored = dhtctl("store", "cli-key", "cli value", "--endpoint", a.control)
            assert stored.returncode == 0, stored.stderr
            if seen.wait(1.0):
                break
        assert seen.is_set(), f"watch saw no record.stored event; got {lines}"
    finally:
        watch.send_signal(signal.SIGINT)
        assert watch.wait(10) == 130

    got = dhtctl("get", "cli-key", "--endpoint", b.control)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "cli value"

    as_json = dhtctl("get", "cli-key", "--endpoint", b.control, "--json")
    doc = json.loads(as_json.stdout)
    assert doc["value"]["utf8"] == "cli value"
    assert doc["publisher"] == a.node_id


def test_exit_codes_against_real_nodes(cluster: ProcCluster) -> None:
    node = cluster.nodes[2]
    missing = dhtctl("get", "no-such-key-anywhere", "--endpoint", node.control)
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    assert missing.stderr.count("\n") == 1  # one clear line, no traceback

    unreachable = dhtctl("id", "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1")
    assert unreachable.returncode == 3
    assert "Traceback" not in unreachable.stderr

    usage = dhtctl("ping", "not-a-node-id", "--endpoint", node.control)
    assert usage.returncode == 2


def test_cli_runner_in_process(cluster: ProcCluster) -> None:
    runner = CliRunner()
    a, c = cluster.nodes[0], cluster.nodes[2]
    r = runner.invoke(app, ["store", "runner-key", "runner value", "--endpoint", c.control])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["get", "runner-key", "--endpoint", a.control])
    assert r.exit_code == 0, r.output
    assert "runner value" in r.output
    r = runner.invoke(app, ["rt", "--endpoint", a.control, "--json"])
    assert json.loads(r.output)["size"] >= 2
    r = runner.invoke(app, ["ping", c.node_id, "--endpoint", a.control, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rtt_ms"] >= 0


def test_shell_session_against_a_real_node(cluster: ProcCluster, tmp_path: Path) -> None:
    import pty

    node = cluster.nodes[1]
    master, slave = pty.openpty()
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "dumb"}
    proc = subprocess.Popen(
        [*DHTCTL, "shell", "--endpoint", node.control],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    script = b"id\nstore shell-key shell-value\nget shell-key\nrt\nquit\n"
    os.write(master, script)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        proc.wait(20)
        os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert node.node_id in text
    assert "shell-value" in text
