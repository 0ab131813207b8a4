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
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Self

from control.client import EventSubscriber
from control.commands import NodeAPI, Result, command_name
from control.curve import CurveKeys
from control.errors import ControlError
from node import tunables
from supervisor.errors import ClusterNotRunning, CommandFailed, KeyNotFound, SupervisorError
from supervisor.front_client import (
    POLL_INTERVAL_S,
    FrontClient,
    Progress,
    formation,
    quiet,
    state_curve,
    status_table,
    wait_formed,
)
from supervisor.lifecycle import (
    Ports,
    log_tail,
    make_launcher,
    resolve_backend,
    spawn_supervisor,
    teardown,
    wait_for_state,
)
from supervisor.natlab import lab_options
from supervisor.spec import DEFAULT_CLUSTER, DEFAULT_UP_TIMEOUT_S, validate_cluster_name
from supervisor.state import ClusterState, load_state, state_root, supervisor_alive

EVENT_POLL_S = 0.2
P = ParamSpec("P")
EventMatch = Callable[[str, dict[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class GetResult:
    value: bytes
    publisher: str
    ts: int
    hops: int


class EventLog:
    """Background SUB thread collecting every event of the supervisor's event endpoint."""

    def __init__(self, endpoint: str, curve: CurveKeys | None = None) -> None:
        self.endpoint = endpoint
        self.curve = curve
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-events", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def _run(self) -> None:
        sub = EventSubscriber(self.endpoint, curve=self.curve)
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
        self, match: EventMatch, start: int, timeout_s: float | None
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


def _meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(meta) if meta else None


class NodeHandle:
    """Commands for one peer, routed through the supervisor front endpoint.

    Every method names its command through ``NodeAPI`` (``self.invoke(NodeAPI.ping, ...)``), so
    the command set stays declared once and mypy checks names and keyword arguments here."""

    def __init__(self, cluster: Cluster, index: int) -> None:
        self.cluster = cluster
        self.index = index

    def call(self, cmd: str, timeout_s: float | None = None, **args: Any) -> dict[str, Any]:
        """Send any command by name (also the supervisor's own ``cluster.*`` ones)."""
        return self.cluster.front.call(cmd, args, node=self.index, timeout_s=timeout_s)

    def invoke(
        self,
        command: Callable[Concatenate[NodeAPI, P], Awaitable[Result]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Result:
        """Run the ``NodeAPI`` command ``command`` (e.g. ``NodeAPI.get``) with its arguments."""
        if args:
            raise TypeError("command arguments are keyword-only")
        return self.cluster.front.call(command_name(command), kwargs, node=self.index)

    def id(self) -> str:
        return str(self.invoke(NodeAPI.id)["id"])

    def peers(self) -> list[dict[str, Any]]:
        return list(self.invoke(NodeAPI.peers)["peers"])

    def rt(self) -> Result:
        return self.invoke(NodeAPI.rt)

    def dump(self) -> Result:
        return self.invoke(NodeAPI.dump)

    def ping(self, node_id: str) -> Result:
        return self.invoke(NodeAPI.ping, node_id=node_id)

    def find(self, node_id: str) -> Result:
        return self.invoke(NodeAPI.find, node_id=node_id)

    def connect(self, node_id: str) -> Result:
        return self.invoke(NodeAPI.connect, node_id=node_id)

    def disconnect(self, node_id: str) -> Result:
        return self.invoke(NodeAPI.disconnect, node_id=node_id)

    def store(self, key: str, value: bytes | str) -> Result:
        data = value.encode() if isinstance(value, str) else value
        return self.invoke(NodeAPI.store, key=key, value=data)

    def get(self, key: str) -> GetResult:
        r = self.invoke(NodeAPI.get, key=key)
        return GetResult(
            value=r["value"],
            publisher=r.get("publisher", ""),
            ts=r.get("ts", 0),
            hops=r.get("hops", 0),
        )

    def store_at(self, address: str, value: bytes | str) -> Result:
        """An open store under a raw DHT key (64 hex digits)."""
        data = value.encode() if isinstance(value, str) else value
        return self.invoke(NodeAPI.store_at, address=address, value=data)

    def put_mutable(
        self,
        name: bytes | str,
        value: bytes | str,
        seq: int | None = None,
        cas: int | None = None,
    ) -> Result:
        """Write this node's mutable record ``name``; the result has its ``address`` and seq.
        A lost CAS race raises ``RemoteError`` with code ``conflict``."""
        salt = name.encode() if isinstance(name, str) else name
        data = value.encode() if isinstance(value, str) else value
        return self.invoke(NodeAPI.put_mutable, name=salt, value=data, seq=seq, cas=cas)

    def put_immutable(self, value: bytes | str) -> Result:
        """Store ``value`` under its hash; the result's ``address`` is the hash."""
        data = value.encode() if isinstance(value, str) else value
        return self.invoke(NodeAPI.put_immutable, value=data)

    def get_address(self, address: str) -> Result:
        """The record at an address (any kind): value, kind, seq, publisher."""
        return self.invoke(NodeAPI.get_address, address=address)

    def stats(self) -> Result:
        return self.invoke(NodeAPI.stats)

    def announce(
        self, topic: str, port: int | None = None, meta: Mapping[str, Any] | None = None
    ) -> Result:
        return self.invoke(NodeAPI.announce, topic=topic, port=port, meta=_meta(meta))

    def unannounce(self, topic: str) -> Result:
        return self.invoke(NodeAPI.unannounce, topic=topic)

    leave = unannounce

    def lookup(self, topic: str) -> list[dict[str, Any]]:
        return list(self.invoke(NodeAPI.lookup, topic=topic)["peers"])

    def join(
        self, topic: str, port: int | None = None, meta: Mapping[str, Any] | None = None
    ) -> Result:
        return self.invoke(NodeAPI.join, topic=topic, port=port, meta=_meta(meta))

    def topics(self) -> list[dict[str, Any]]:
        return list(self.invoke(NodeAPI.topics)["topics"])

    def shutdown(self) -> Result:
        """Stop the node cleanly (the supervisor then restarts it, as after any exit)."""
        return self.invoke(NodeAPI.shutdown)

    def listen(self, key: str) -> Result:
        """Listen to ``key`` on this node: every new version stored anywhere becomes a
        ``record.updated`` event (``updates(key)`` iterates them)."""
        return self.invoke(NodeAPI.listen, key=key)

    def updates(self, key: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """This node's ``record.updated`` events for ``key`` (since cluster start), then new
        ones as they arrive; stops after ``timeout_s`` without a new one."""

        def match(t: str, p: dict[str, Any]) -> bool:
            return t == "record.updated" and p.get("index") == self.index and p.get("key") == key

        return self._follow(match, timeout_s)

    def _follow(
        self, match: Callable[[str, dict[str, Any]], bool], timeout_s: float | None
    ) -> Iterator[dict[str, Any]]:
        position = 0
        while True:
            position, found = self.cluster.event_log.wait_for(match, position, timeout_s)
            if not found:
                return
            yield from found

    def unlisten(self, key: str) -> Result:
        return self.invoke(NodeAPI.unlisten, key=key)

    def _discovery_match(self, topic: str) -> Callable[[str, dict[str, Any]], bool]:
        def match(t: str, p: dict[str, Any]) -> bool:
            return t == "topic.peer" and p.get("index") == self.index and p.get("topic") == topic

        return match

    def discovered(self, topic: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """``topic.peer`` events for ``topic`` seen by this node (since cluster start), then
        new ones as they arrive; stops after ``timeout_s`` without a new one."""
        return self._follow(self._discovery_match(topic), timeout_s)

    async def adiscovered(
        self, topic: str, timeout_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The async iterator variant of ``discovered``."""
        match = self._discovery_match(topic)
        position = 0
        while True:
            position, found = await asyncio.to_thread(
                self.cluster.event_log.wait_for, match, position, timeout_s
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
        self.front = FrontClient.of(state)
        self.event_log = EventLog(state.events, state_curve(state))
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
        progress: Progress = quiet,
        browser_peers: int = 0,
        settings: Mapping[str, int | float] | None = None,
        secure: bool = False,
        ice_servers: Sequence[str] = (),
        lab: str = "",
        nat: str = "eim",
        turn: bool = True,
    ) -> Cluster:
        """Start a cluster of ``peers`` Python peers and ``browser_peers`` headless-Chromium
        peers (numbered ``peers + 1 ...``; process backend), and wait until it is formed.
        ``settings``: node tunables for every peer (``node.tunables``, e.g.
        ``{"repair_interval_s": 5}``; ValueError for an unknown name or a bad value).
        ``secure``: CURVE on every control and event socket (always on for swarm);
        ``ice_servers``: STUN/TURN URLs for every peer.
        ``lab="nat"``: every peer behind its own NAT of kind ``nat`` (``supervisor.natlab``),
        a coturn STUN/TURN server (relaying unless ``turn=False``); needs root."""
        if not isinstance(peers, int) or isinstance(peers, bool) or peers < 1:
            raise ValueError(f"peers must be a positive integer, got {peers!r}")
        node_args = (*node_args, *tunables.node_args(settings or {}))
        lab_opts = lab_options(lab, nat, turn, peers)
        kind = resolve_backend(backend, process_only=lab_opts is not None or browser_peers > 0)
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
        proc = spawn_supervisor(
            name,
            peers,
            kind,
            root,
            ports,
            node_args,
            env,
            browser_peers=browser_peers,
            secure=secure,
            ice_servers=ice_servers,
            lab=lab_opts,
        )
        try:
            state = wait_for_state(name, root, proc)
            cluster = cls(name, root, state, owned=True)
            cluster._temp_root = temp_root
        except BaseException:
            teardown(name, root, kind)
            raise
        try:
            wait_formed(
                cluster.front,
                peers + browser_peers,
                timeout_s,
                progress,
                alive=lambda: proc.poll() is None,
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
        _, found = self.event_log.wait_for(
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

        _, found = self.event_log.wait_for(match, 0, timeout)
        return found

    def event_count(self) -> int:
        with self.event_log.cond:
            return len(self.event_log.events)

    # -- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Detach without stopping the cluster."""
        self.event_log.close()
        self.front.close()

    def down(self, purge: bool = False) -> None:
        """Stop the cluster; the peers' data stays for the next ``up`` unless ``purge``."""
        self.close()
        teardown(self.name, self.root, purge=purge)
        if self._temp_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.owned:
            self.down()
        else:
            self.close()


# Names shared with orchestrate.py (defined in supervisor.front_client / supervisor.lifecycle).
__all__ = [
    "Cluster",
    "ClusterNotRunning",
    "CommandFailed",
    "ControlError",
    "EventLog",
    "FrontClient",
    "GetResult",
    "KeyNotFound",
    "NodeHandle",
    "Ports",
    "formation",
    "log_tail",
    "make_launcher",
    "resolve_backend",
    "spawn_supervisor",
    "status_table",
    "teardown",
    "wait_for_state",
    "wait_formed",
]
