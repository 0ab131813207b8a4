"""Starting and stopping clusters: choosing a backend, spawning the detached supervisor, waiting
for its state file, and tearing everything of a cluster down (``orchestrate.py`` and ``Cluster``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor import natlab
from supervisor.detached import spawn_detached
from supervisor.errors import ClusterNotRunning, SupervisorError
from supervisor.front_client import FrontClient
from supervisor.lab_cluster import lab_directory
from supervisor.launcher import Launcher
from supervisor.spec import NODES_DIR, Backend, LabOptions
from supervisor.state import SUPERVISOR_LOG, ClusterState, cluster_dir, load_state, pid_alive

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_WAIT_S = 30.0
SHUTDOWN_WAIT_S = 40.0


# -- backends ----------------------------------------------------------------------------------


def docker_available() -> bool:
    """True when the Docker backend exists and reports a reachable engine."""
    try:
        from supervisor import containers

        return bool(containers.engine_available())
    except Exception:
        return False


def resolve_backend(name: str, process_only: bool = False) -> Backend:
    """``auto`` is Docker when an engine answers, else processes; with ``process_only`` (browser
    peers, the NAT lab: they run on the process backend only) it is processes, and no engine is
    asked."""
    if name == "auto":
        if process_only:
            return Backend.PROCESS
        return Backend.DOCKER if docker_available() else Backend.PROCESS
    try:
        return Backend(name)
    except ValueError:
        raise ValueError(f"unknown backend {name!r} (use docker, process or auto)") from None


def make_launcher(backend: Backend | str, root: Path) -> Launcher:
    backend = Backend(backend)
    if backend is Backend.PROCESS:
        from supervisor.processes import ProcessLauncher

        return ProcessLauncher(root)
    if backend is Backend.DOCKER:
        from supervisor.containers import DockerLauncher

        launcher: Launcher = DockerLauncher()
        return launcher
    if backend is Backend.SWARM:
        from supervisor.swarm import SwarmLauncher

        return SwarmLauncher()
    from supervisor.memory import MemoryLauncher

    return MemoryLauncher()


# -- starting and stopping clusters ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ports:
    front: int | None = None  # None: the supervisor's default; 0: any free port
    events: int | None = None
    metrics: int | None = None
    signaling: int | None = None

    @classmethod
    def free(cls) -> Ports:
        return cls(0, 0, 0, 0)

    def argv(self) -> list[str]:
        out: list[str] = []
        for name in ("front", "events", "metrics", "signaling"):
            value = getattr(self, name)
            if value is not None:
                out += [f"--{name}-port", str(value)]
        return out


def spawn_supervisor(
    cluster: str,
    peers: int,
    backend: Backend,
    root: Path,
    ports: Ports = Ports(),
    node_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    browser_peers: int = 0,
    secure: bool = False,
    ice_servers: Sequence[str] = (),
    lab: LabOptions | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m supervisor run`` detached, output to ``<cluster>/supervisor.log``."""
    directory = cluster_dir(cluster, root)
    argv = [
        sys.executable,
        "-m",
        "supervisor",
        "run",
        "--cluster",
        cluster,
        "--peers",
        str(peers),
        "--backend",
        str(backend),
        "--state-dir",
        str(root),
        *ports.argv(),
    ]
    for arg in node_args:
        argv.append(f"--node-arg={arg}")
    if browser_peers:
        argv += ["--browser-peers", str(browser_peers)]
    if secure:
        argv.append("--secure")
    for url in ice_servers:
        argv.append(f"--ice-server={url}")
    if lab is not None:
        argv += ["--lab", "nat", "--nat", lab.nat, "--turn" if lab.turn else "--no-turn"]
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    return spawn_detached(argv, directory / SUPERVISOR_LOG, child_env, cwd=REPO_ROOT)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def wait_for_state(
    cluster: str, root: Path, proc: subprocess.Popen[bytes], timeout_s: float = STATE_WAIT_S
) -> ClusterState:
    """Wait until the supervisor we started has written its endpoints."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = load_state(cluster, root)
        if state is not None and state.supervisor_pid == proc.pid and state.front:
            return state
        if proc.poll() is not None:
            tail = log_tail(cluster_dir(cluster, root) / SUPERVISOR_LOG)
            raise ClusterNotRunning(
                f"the supervisor exited with code {proc.returncode} before it was ready:\n{tail}"
            )
        time.sleep(0.05)
    raise ClusterNotRunning(f"the supervisor did not write its state within {timeout_s:g} s")


def _wait_pid_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def remove_state_dir(directory: Path, keep: tuple[str, ...]) -> None:
    """Remove ``directory`` except its entries named in ``keep`` (the peers' data dirs)."""
    if not keep:
        shutil.rmtree(directory, ignore_errors=True)
        return
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def teardown(
    cluster: str, root: Path, backend: Backend | str | None = None, purge: bool = False
) -> bool:
    """Stop everything of ``cluster`` and remove its state; False when there was nothing.

    The peers' data (keys, so node IDs, and their SQLite stores) stays for the next ``up`` of
    the same cluster unless ``purge``."""
    directory = cluster_dir(cluster, root)
    try:
        state = load_state(cluster, root)
    except SupervisorError:
        state = None
    kept_only = directory.is_dir() and {e.name for e in directory.iterdir()} <= {NODES_DIR}
    found_anything = state is not None or (directory.exists() and not kept_only)
    if state is not None and state.supervisor_pid is not None and pid_alive(state.supervisor_pid):
        pid = state.supervisor_pid
        try:
            client = FrontClient.of(state, timeout_s=5.0) if state.front else None
        except SupervisorError:
            client = None  # the key is gone: signals below
        try:
            if client is not None:
                client.call("cluster.shutdown")
        except SupervisorError:
            pass
        finally:
            if client is not None:
                client.close()
        if not _wait_pid_gone(pid, SHUTDOWN_WAIT_S if client else 0.0):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not _wait_pid_gone(pid, SHUTDOWN_WAIT_S):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _wait_pid_gone(pid, 5.0)
    kinds = {Backend(backend)} if backend else set()
    if state is not None:
        kinds.add(Backend(state.backend))
    if not kinds:
        kinds = {Backend.PROCESS}
        if docker_available():
            kinds.add(Backend.DOCKER)
    for kind in kinds:
        if kind is Backend.MEMORY:
            continue
        launcher = make_launcher(kind, root)
        if launcher.find(cluster):
            found_anything = True
        launcher.remove_cluster(cluster, purge=purge)
    if natlab.teardown(lab_directory(directory)):  # after the members: nothing runs inside
        found_anything = True
    remove_state_dir(directory, keep=() if purge else (NODES_DIR,))
    return found_anything
