"""The Python API for scripted cluster tests, and the pieces ``orchestrate.py`` shares with it.

    with Cluster.up(peers=10, backend="process") as c:    # unique name, temp state dir, free ports
        c.node(7).store("k", b"v")
        assert c.node(3).get("k").value == b"v"
        c.kill(5); c.wait_restarted(5)
        c.events(topic="record.stored", timeout=5)

``Cluster.up`` starts the supervisor as a detached process (``python -m supervisor run``), waits
for it to publish its endpoints in the state file, then waits until the DHT is *formed*: every
peer's routing table holds at least ``min(8, N-1)`` contacts and a probe value stored through one
node can be read through another. A background thread subscribes to the supervisor's event
endpoint from the start, so ``events()`` sees everything published since the cluster came up.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from control.client import ControlClient, EventSubscriber
from control.errors import ControlError, ProtocolError, RemoteError, Timeout, Unreachable
from supervisor.errors import (
    ClusterNotRunning,
    ClusterUnreachable,
    CommandFailed,
    KeyNotFound,
    NotFormed,
    SupervisorError,
)
from supervisor.launcher import Launcher
from supervisor.spec import (
    DEFAULT_CLUSTER,
    DEFAULT_UP_TIMEOUT_S,
    Backend,
    formed_threshold,
    validate_cluster_name,
)
from supervisor.state import (
    SUPERVISOR_LOG,
    ClusterState,
    cluster_dir,
    load_state,
    pid_alive,
    state_root,
    supervisor_alive,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
FRONT_TIMEOUT_S = 35.0  # a little above the supervisor's per-node command timeout
STATE_WAIT_S = 30.0
POLL_INTERVAL_S = 0.5
SHUTDOWN_WAIT_S = 40.0
PROBE_PREFIX = "__formed_probe__/"
EVENT_POLL_S = 0.2

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


# -- backends ----------------------------------------------------------------------------------


def docker_available() -> bool:
    """True when the Docker backend exists and reports a reachable engine."""
    try:
        from supervisor import containers

        return bool(containers.engine_available())
    except Exception:
        return False


def resolve_backend(name: str) -> Backend:
    if name == "auto":
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
    from supervisor.memory import MemoryLauncher

    return MemoryLauncher()


# -- talking to the supervisor -----------------------------------------------------------------


class FrontClient:
    """Blocking client of the supervisor front endpoint (thread-safe: one call at a time)."""

    def __init__(self, endpoint: str, timeout_s: float = FRONT_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self._client = ControlClient(endpoint, timeout_s)
        self._lock = threading.Lock()

    def call(
        self,
        cmd: str,
        args: Mapping[str, Any] | None = None,
        *,
        node: int | str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            try:
                return self._client.request(cmd, args, node=node, timeout_s=timeout_s)
            except RemoteError as exc:
                kind = KeyNotFound if exc.code == "not_found" else CommandFailed
                raise kind(exc.code, exc.message, exc.details) from None
            except (Unreachable, Timeout, ProtocolError) as exc:
                raise ClusterUnreachable(f"supervisor at {self.endpoint}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._client.close()


def status_table(status: Mapping[str, Any]) -> str:
    """The human table of ``cluster.status``: one row per peer."""
    header = ("node", "id", "control", "peers", "rt", "restarts", "health")
    rows = [header]
    for node in status.get("nodes", []):
        rows.append(
            (
                str(node.get("index")),
                (node.get("id") or "-")[:8],
                str(node.get("control") or "-"),
                "-" if node.get("peers") is None else str(node["peers"]),
                "-" if node.get("rt") is None else str(node["rt"]),
                str(node.get("restarts", 0)),
                str(node.get("health", "?")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    sig = status.get("signaling") or {}
    lines.append(
        f"signaling {sig.get('url', '-')} ({sig.get('health', '?')}, "
        f"restarts {sig.get('restarts', 0)})"
    )
    return "\n".join(line.rstrip() for line in lines)


def formation(status: Mapping[str, Any], peers: int) -> tuple[int, int]:
    """(peers whose routing table reached the threshold, threshold)."""
    threshold = formed_threshold(peers)
    ready = sum(
        1
        for n in status.get("nodes", [])
        if n.get("health") == "up" and isinstance(n.get("rt"), int) and n["rt"] >= threshold
    )
    return ready, threshold


def probe(client: FrontClient, peers: int) -> bool:
    """Store through node 1, read back through another node (the last one)."""
    key = PROBE_PREFIX + secrets.token_hex(8)
    value = secrets.token_bytes(16)
    try:
        client.call("store", {"key": key, "value": value}, node=1)
        got = client.call("get", {"key": key}, node=max(1, peers))
    except (CommandFailed, ClusterUnreachable):
        return False
    return got.get("value") == value


def wait_formed(
    client: FrontClient,
    peers: int,
    timeout_s: float,
    progress: Progress = _quiet,
    alive: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Poll ``cluster.status`` until the DHT is formed; returns the final status."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotFormed(f"the DHT did not form within {timeout_s:g} s ({last or 'no status'})")
        if not alive():
            raise ClusterNotRunning("the supervisor exited while the cluster was forming")
        try:
            status = client.call("cluster.status", timeout_s=min(10.0, max(1.0, remaining)))
        except ClusterUnreachable:
            status = None
        if status is not None:
            nodes = status.get("nodes", [])
            up = sum(1 for n in nodes if n.get("health") == "up")
            ready, threshold = formation(status, peers)
            last = f"{up}/{len(nodes)} peers up, {ready}/{len(nodes)} with rt >= {threshold}"
            progress(last)
            if len(nodes) == peers and ready == peers:
                progress(last + ", probing store/get")
                if probe(client, peers):
                    return client.call("cluster.status")
                last += ", probe store/get not yet answered"
        time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


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
) -> subprocess.Popen[bytes]:
    """Start ``python -m supervisor run`` detached, output to ``<cluster>/supervisor.log``."""
    directory = cluster_dir(cluster, root)
    directory.mkdir(parents=True, exist_ok=True)
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
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    with open(directory / SUPERVISOR_LOG, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=child_env,
            start_new_session=True,
        )


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


def teardown(cluster: str, root: Path, backend: Backend | str | None = None) -> bool:
    """Stop everything of ``cluster`` and remove its state; False when there was nothing."""
    directory = cluster_dir(cluster, root)
    try:
        state = load_state(cluster, root)
    except SupervisorError:
        state = None
    found_anything = state is not None or directory.exists()
    if state is not None and state.supervisor_pid is not None and pid_alive(state.supervisor_pid):
        pid = state.supervisor_pid
        client = FrontClient(state.front, timeout_s=5.0) if state.front else None
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
        launcher.remove_cluster(cluster)
    shutil.rmtree(directory, ignore_errors=True)
    return found_anything


# -- the API -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetResult:
    value: bytes
    publisher: str
    ts: int
    hops: int


class _EventLog:
    """Background SUB thread collecting every event of the supervisor's event endpoint."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-events", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def _run(self) -> None:
        sub = EventSubscriber(self.endpoint)
        self._ready.set()
        try:
            while not self._stop.is_set():
                event = sub.recv(timeout_s=EVENT_POLL_S)
                if event is not None:
                    with self.cond:
                        self.events.append(event)
                        self.cond.notify_all()
        finally:
            sub.close()

    def wait_for(
        self, match: Callable[[str, dict[str, Any]], bool], start: int, timeout_s: float | None
    ) -> tuple[int, list[dict[str, Any]]]:
        """Events matching from position ``start``; waits up to ``timeout_s`` for the first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self.cond:
            while True:
                found = [p for t, p in self.events[start:] if match(t, p)]
                if found:
                    return len(self.events), found
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return len(self.events), []
                self.cond.wait(remaining if remaining is not None else 1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


class NodeHandle:
    """Commands for one peer, routed through the supervisor front endpoint."""

    def __init__(self, cluster: Cluster, index: int) -> None:
        self.cluster = cluster
        self.index = index

    def call(self, cmd: str, timeout_s: float | None = None, **args: Any) -> dict[str, Any]:
        return self.cluster.front.call(cmd, args, node=self.index, timeout_s=timeout_s)

    def id(self) -> str:
        return str(self.call("id")["id"])

    def peers(self) -> list[dict[str, Any]]:
        return list(self.call("peers")["peers"])

    def rt(self) -> dict[str, Any]:
        return self.call("rt")

    def ping(self, node_id: str) -> dict[str, Any]:
        return self.call("ping", node_id=node_id)

    def find(self, node_id: str) -> dict[str, Any]:
        return self.call("find", node_id=node_id)

    def connect(self, node_id: str) -> dict[str, Any]:
        return self.call("connect", node_id=node_id)

    def store(self, key: str, value: bytes | str) -> dict[str, Any]:
        data = value.encode() if isinstance(value, str) else value
        return self.call("store", key=key, value=data)

    def get(self, key: str) -> GetResult:
        r = self.call("get", key=key)
        return GetResult(
            value=r["value"],
            publisher=r.get("publisher", ""),
            ts=r.get("ts", 0),
            hops=r.get("hops", 0),
        )

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def announce(
        self, topic: str, port: int | None = None, meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.call("announce", topic=topic, port=port, meta=dict(meta) if meta else None)

    def unannounce(self, topic: str) -> dict[str, Any]:
        return self.call("unannounce", topic=topic)

    leave = unannounce

    def lookup(self, topic: str) -> list[dict[str, Any]]:
        return list(self.call("lookup", topic=topic)["peers"])

    def join(
        self, topic: str, port: int | None = None, meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.call("join", topic=topic, port=port, meta=dict(meta) if meta else None)

    def topics(self) -> list[dict[str, Any]]:
        return list(self.call("topics")["topics"])

    def _discovery_match(self, topic: str) -> Callable[[str, dict[str, Any]], bool]:
        def match(t: str, p: dict[str, Any]) -> bool:
            return t == "topic.peer" and p.get("index") == self.index and p.get("topic") == topic

        return match

    def discovered(self, topic: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """``topic.peer`` events for ``topic`` seen by this node (since cluster start), then
        new ones as they arrive; stops after ``timeout_s`` without a new one."""
        match = self._discovery_match(topic)
        position = 0
        while True:
            position, found = self.cluster._events.wait_for(match, position, timeout_s)
            if not found:
                return
            yield from found

    async def adiscovered(
        self, topic: str, timeout_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The async iterator variant of ``discovered``."""
        match = self._discovery_match(topic)
        position = 0
        while True:
            position, found = await asyncio.to_thread(
                self.cluster._events.wait_for, match, position, timeout_s
            )
            if not found:
                return
            for payload in found:
                yield payload


class Cluster:
    def __init__(self, name: str, root: Path, state: ClusterState, owned: bool) -> None:
        self.name = name
        self.root = root
        self.owned = owned  # created by Cluster.up: removed (with its temp dir) on exit
        self._state = state
        self.front = FrontClient(state.front)
        self._events = _EventLog(state.events)
        self._temp_root = False

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        peers: int,
        backend: str = "process",
        name: str | None = None,
        *,
        timeout_s: float = DEFAULT_UP_TIMEOUT_S,
        state_dir: str | os.PathLike[str] | None = None,
        node_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        progress: Progress = _quiet,
    ) -> Cluster:
        if not isinstance(peers, int) or isinstance(peers, bool) or peers < 1:
            raise ValueError(f"peers must be a positive integer, got {peers!r}")
        kind = resolve_backend(backend)
        temp_root = False
        if name is None:
            name = f"t{os.getpid()}-{secrets.token_hex(4)}"
            if state_dir is None:
                state_dir = tempfile.mkdtemp(prefix="dht-cluster-")
                temp_root = True
            ports = Ports.free()
        else:
            ports = Ports()
        validate_cluster_name(name)
        root = state_root(state_dir)
        existing = load_state(name, root)
        if existing is not None and supervisor_alive(existing):
            raise SupervisorError(f"cluster {name!r} is already running")
        proc = spawn_supervisor(name, peers, kind, root, ports, node_args, env)
        try:
            state = wait_for_state(name, root, proc)
            cluster = cls(name, root, state, owned=True)
            cluster._temp_root = temp_root
        except BaseException:
            teardown(name, root, kind)
            raise
        try:
            wait_formed(
                cluster.front, peers, timeout_s, progress, alive=lambda: proc.poll() is None
            )
        except BaseException:
            cluster.down()
            raise
        return cluster

    @classmethod
    def attach(
        cls, name: str = DEFAULT_CLUSTER, state_dir: str | os.PathLike[str] | None = None
    ) -> Cluster:
        root = state_root(state_dir)
        state = load_state(name, root)
        if state is None or not supervisor_alive(state):
            raise ClusterNotRunning(f"cluster {name!r} is not running")
        return cls(name, root, state, owned=False)

    # -- queries and actions -------------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        state = load_state(self.name, self.root)
        if state is not None:
            self._state = state
        return self._state

    @property
    def nodes(self) -> list[int]:
        return [n.index for n in self.state.nodes]

    def node(self, index: int) -> NodeHandle:
        return NodeHandle(self, index)

    def status(self) -> dict[str, Any]:
        return self.front.call("cluster.status")

    def metrics(self) -> dict[str, Any]:
        return self.front.call("cluster.metrics")

    def scale(self, peers: int, timeout_s: float = DEFAULT_UP_TIMEOUT_S) -> dict[str, Any]:
        self.front.call("cluster.scale", {"peers": peers})
        return wait_formed(self.front, peers, timeout_s)

    def kill(self, index: int) -> dict[str, Any]:
        """SIGKILL member ``index`` (a crash the supervisor repairs)."""
        return self.front.call("cluster.kill", {"index": index})

    def restart(self, index: int) -> dict[str, Any]:
        return self.front.call("cluster.restart", {"index": index})

    def restarts(self, index: int) -> int:
        for node in self.status()["nodes"]:
            if node["index"] == index:
                return int(node["restarts"])
        raise ValueError(f"no node {index}")

    def wait_restarted(self, index: int, timeout_s: float = 60.0, since: int = 0) -> None:
        """Wait for a ``cluster.node_restarted`` event of ``index`` and for the node to answer."""
        _, found = self._events.wait_for(
            lambda t, p: t == "cluster.node_restarted" and p.get("index") == index,
            since,
            timeout_s,
        )
        if not found:
            raise TimeoutError(f"node {index} was not restarted within {timeout_s:g} s")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.status()["nodes"]:
                if node["index"] == index and node["health"] == "up":
                    return
            time.sleep(POLL_INTERVAL_S)
        raise TimeoutError(f"node {index} restarted but did not answer within {timeout_s:g} s")

    def events(
        self,
        topic: str | None = None,
        timeout: float = 5.0,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Events since cluster start matching ``topic`` (a prefix) and ``predicate``; waits up
        to ``timeout`` for the first one. Payloads carry ``index`` and ``topic``."""

        def match(t: str, p: dict[str, Any]) -> bool:
            return (topic is None or t.startswith(topic)) and (predicate is None or predicate(p))

        _, found = self._events.wait_for(match, 0, timeout)
        return found

    def event_count(self) -> int:
        with self._events.cond:
            return len(self._events.events)

    # -- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Detach without stopping the cluster."""
        self._events.close()
        self.front.close()

    def down(self) -> None:
        self.close()
        teardown(self.name, self.root)
        if self._temp_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.owned:
            self.down()
        else:
            self.close()


__all__ = [
    "Cluster",
    "ClusterNotRunning",
    "CommandFailed",
    "ControlError",
    "GetResult",
    "KeyNotFound",
    "NodeHandle",
]
