"""DockerLauncher against the real engine and the project image (marker ``docker``).

Members here are tiny ``python -c`` programs and the real signaling server, run in the project
image with host networking. Each test uses its own cluster name and removes it afterwards.
Skips when no engine answers, except under ``CI=true``, where a missing engine is a failure.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.containers import (
    DockerLauncher,
    engine_available,
    listen_ports,
    member_labels,
)
from supervisor.errors import LaunchError
from supervisor.launcher import MemberHandle, MemberSpec, MemberState, Role
from tests.support.cli import require_engine

IMAGE = os.environ.get("DHT_TEST_IMAGE", "webrtc-dht:latest")
WAIT_S = 30.0
SLEEPER = "import time\nwhile True: time.sleep(1)"
BOOT_COUNTER = (
    "import os, time\n"
    "open('/data/boots', 'a').write('x')\n"
    "print('boots', len(open('/data/boots').read()), flush=True)\n"
    "while True: time.sleep(1)"
)

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"


@pytest.fixture(scope="module")
def image() -> str:
    require_engine()
    import docker

    client = docker.from_env()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        from imagebuild import build_images

        build_images(None, progress=lambda _line: None)
    finally:
        client.close()
    return IMAGE


@pytest.fixture
def launcher(image: str) -> Iterator[DockerLauncher]:
    dl = DockerLauncher(image)
    yield dl
    dl.close()


@pytest.fixture
def cluster(launcher: DockerLauncher) -> Iterator[str]:
    name = f"it-{uuid.uuid4().hex[:10]}"
    yield name
    launcher.remove_cluster(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peer(cluster: str, index: int, code: str = SLEEPER, volume: bool = True) -> MemberSpec:
    return MemberSpec(
        cluster=cluster,
        role=Role.PEER,
        index=index,
        argv=["python", "-c", code],
        env={"DHT_TEST": "1"},
        data_dir=f"dht-{cluster}-{index}" if volume else None,
    )


def signaling(cluster: str, port: int) -> MemberSpec:
    argv = ["python", "-m", "signaling", "--host", "127.0.0.1", "--port", str(port)]
    return MemberSpec(cluster=cluster, role=Role.SIGNALING, index=0, argv=argv)


def wait_line(launcher: DockerLauncher, handle: MemberHandle, needle: str) -> str:
    """The first log line containing ``needle``; fails after WAIT_S.

    The log is re-read rather than followed: a follow stream attached while the engine is
    restarting the container ends at once, before the new run writes anything."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for line in launcher.logs(handle):
            if needle in line:
                return line
        time.sleep(0.2)
    tail = "\n".join(launcher.logs(handle, tail=20))
    pytest.fail(f"{needle!r} never appeared in the logs of {handle}:\n{tail}")


def wait_exited(launcher: DockerLauncher, handle: MemberHandle) -> int:
    result: dict[str, Any] = launcher.client.api.wait(handle.ref, timeout=WAIT_S)
    return int(result["StatusCode"])


def wait_restarted(launcher: DockerLauncher, handle: MemberHandle, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        info = launcher.inspect(handle)
        state = info["State"]["Status"] if info else "missing"
        if launcher.restart_count(handle) >= count and state == "running":
            return
        assert time.monotonic() < deadline, f"{handle} was not restarted {count} time(s)"
        time.sleep(0.1)


def volume_names(launcher: DockerLauncher, cluster: str) -> set[str]:
    found = launcher.client.api.volumes(filters={"label": [f"dht.cluster={cluster}"]})
    return {v["Name"] for v in found.get("Volumes") or []}


# -- no engine needed ------------------------------------------------------------------------


def test_engine_available_is_false_fast_for_a_dead_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    started = time.monotonic()
    assert engine_available() is False
    assert time.monotonic() - started < 2.0


def test_launcher_on_a_dead_socket_raises_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(LaunchError, match="engine is unreachable"):
        DockerLauncher()


def test_listen_ports_come_from_listen_flags_only() -> None:
    argv = [
        "python", "-m", "peer", "--signaling", "ws://127.0.0.1:3000",
        "--control", "tcp://127.0.0.1:7003", "--events", "tcp://0.0.0.0:7004",
        "--data-dir", "/data",
    ]  # fmt: skip
    assert listen_ports(argv) == [(7003, "--control"), (7004, "--events")]
    assert listen_ports(["python", "-m", "signaling", "--port", "3100"]) == [(3100, "--port")]
    assert listen_ports(["x", "--control", "tcp://10.0.0.9:7000", "--port", "nope"]) == []


def test_healthcheck_script_asks_the_control_socket_for_id() -> None:
    import msgpack
    import zmq

    sys.path.insert(0, str(IMAGES_DIR))
    try:
        import healthcheck
    finally:
        sys.path.remove(str(IMAGES_DIR))
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    seen: list[Any] = []

    def serve() -> None:
        seen.append(msgpack.unpackb(rep.recv()))
        rep.send(msgpack.packb({"v": 1, "id": 1, "ok": True, "result": {"id": "ab"}}))

    thread = threading.Thread(target=serve)
    thread.start()
    argv = ["python", "-m", "peer", "--control", f"tcp://0.0.0.0:{port}"]
    try:
        assert healthcheck.check_node(argv, {}) is None
        thread.join(5)
        assert seen == [{"v": 1, "id": 1, "cmd": "id", "args": {}}]
        dead = free_port()
        reason = healthcheck.check_node(
            ["python", "-m", "peer"], {"DHT_CONTROL": f"tcp://127.0.0.1:{dead}"}
        )
        assert reason is not None
        assert "no reply" in reason
        assert healthcheck.check_signaling(["-m", "signaling", "--port", str(dead)], {}) is not None
    finally:
        rep.close(0)
        ctx.term()


# -- against the engine ----------------------------------------------------------------------


@pytest.mark.docker
def test_signaling_member_runs_with_labels_host_network_and_logs(
    launcher: DockerLauncher, cluster: str
) -> None:
    port = free_port()
    handle = launcher.start(signaling(cluster, port))
    assert (handle.cluster, handle.role, handle.index) == (cluster, Role.SIGNALING, 0)
    assert launcher.state(handle) is MemberState.RUNNING
    assert launcher.exit_code(handle) is None
    line = wait_line(launcher, handle, "listening on ws://")
    assert line.endswith(f"listening on ws://127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # host networking: the container's port is the host's port
    info = launcher.inspect(handle)
    assert info is not None
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    assert member_labels(cluster, Role.SIGNALING, 0).items() <= info["Config"]["Labels"].items()
    check = launcher.client.containers.get(handle.ref).exec_run(
        ["/opt/dht/bin/python", "/opt/dht/healthcheck.py"]
    )
    assert (check.exit_code, check.output.strip()) == (0, b"healthy")
    assert launcher.find(cluster) == [handle]


@pytest.mark.docker
def test_stop_is_clean_and_not_restarted(launcher: DockerLauncher, cluster: str) -> None:
    handle = launcher.start(signaling(cluster, free_port()))
    wait_line(launcher, handle, "listening on ws://")
    launcher.stop(handle, timeout_s=10)
    assert launcher.state(handle) is MemberState.EXITED
    assert launcher.exit_code(handle) == 0
    assert launcher.restart_count(handle) == 0
    launcher.stop(handle)  # stopping a stopped member is fine


@pytest.mark.docker
def test_kill_exits_137_and_start_replaces_the_container(
    launcher: DockerLauncher, cluster: str
) -> None:
    handle = launcher.start(peer(cluster, 1))
    launcher.kill(handle)
    assert wait_exited(launcher, handle) == 137
    assert launcher.state(handle) is MemberState.EXITED
    assert launcher.exit_code(handle) == 137
    assert launcher.restart_count(handle) == 0  # a kill through the API is not a crash
    launcher.kill(handle)  # idempotent
    again = launcher.start(peer(cluster, 1))  # what the supervisor does with an EXITED member
    assert again.ref != handle.ref
    assert launcher.find(cluster) == [again]
    assert launcher.state(handle) is MemberState.MISSING
    assert launcher.exit_code(handle) is None


@pytest.mark.docker
def test_engine_restarts_a_crash_and_the_volume_keeps_data(
    launcher: DockerLauncher, cluster: str
) -> None:
    handle = launcher.start(peer(cluster, 2, BOOT_COUNTER))
    wait_line(launcher, handle, "boots 1")
    launcher.crash(handle)
    wait_restarted(launcher, handle, 1)
    assert wait_line(launcher, handle, "boots 2") == "boots 2"
    # A fresh container of the same member (a supervisor restart) mounts the same volume.
    launcher.kill(handle)
    again = launcher.start(peer(cluster, 2, BOOT_COUNTER))
    assert wait_line(launcher, again, "boots 3") == "boots 3"
    assert volume_names(launcher, cluster) == {f"dht-{cluster}-2"}


@pytest.mark.docker
def test_exit_code_and_logs_tail(launcher: DockerLauncher, cluster: str) -> None:
    code = "import sys\nfor i in range(5): print('line', i)\nsys.exit(0)"
    handle = launcher.start(peer(cluster, 3, code, volume=False))
    assert wait_exited(launcher, handle) == 0
    assert launcher.exit_code(handle) == 0
    assert list(launcher.logs(handle)) == [f"line {i}" for i in range(5)]
    assert list(launcher.logs(handle, tail=2)) == ["line 3", "line 4"]


@pytest.mark.docker
def test_two_clusters_are_kept_apart(launcher: DockerLauncher, cluster: str) -> None:
    other = f"{cluster}-b"
    try:
        mine = [launcher.start(peer(cluster, i)) for i in (1, 2)]
        theirs = launcher.start(peer(other, 1))
        assert launcher.find(cluster) == mine
        assert launcher.find(other) == [theirs]
        launcher.remove_cluster(cluster)
        assert launcher.find(cluster) == []
        assert volume_names(launcher, cluster) == set()
        assert launcher.find(other) == [theirs]
        assert launcher.state(theirs) is MemberState.RUNNING
        assert volume_names(launcher, other) == {f"dht-{other}-1"}
        launcher.remove_cluster(cluster)  # idempotent
    finally:
        launcher.remove_cluster(other)
    assert launcher.find(other) == []
    assert volume_names(launcher, other) == set()


@pytest.mark.docker
def test_port_in_use_is_refused_clearly(launcher: DockerLauncher, cluster: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LaunchError, match=f"port {port} .* already in use"):
            launcher.start(signaling(cluster, port))
    assert launcher.find(cluster) == []


@pytest.mark.docker
def test_missing_image_says_how_to_build(cluster: str, image: str) -> None:
    absent = DockerLauncher(f"webrtc-dht:absent-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(LaunchError, match=r"orchestrate\.py build"):
            absent.start(peer(cluster, 1))
    finally:
        absent.remove_cluster(cluster)
        absent.close()
