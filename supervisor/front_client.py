"""Talking to a running supervisor: the blocking front-endpoint client and the formation check.

The DHT counts as *formed* when every peer's routing table holds at least ``min(8, N-1)``
contacts (``supervisor.spec.formed_threshold``) and a probe value stored through node 1 can be
read through node N.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from control.client import ControlClient
from control.cluster_state import ClusterState
from control.curve import CurveKeys, KeyFileError
from control.errors import ProtocolError, RemoteError, Timeout, Unreachable
from supervisor.errors import (
    ClusterNotRunning,
    ClusterUnreachable,
    CommandFailed,
    KeyNotFound,
    NotFormed,
)
from supervisor.spec import formed_threshold

FRONT_TIMEOUT_S = 35.0  # a little above the supervisor's per-node command timeout
POLL_INTERVAL_S = 0.5
PROBE_PREFIX = "__formed_probe__/"

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """A ``Progress`` that says nothing."""
    return


class FrontClient:
    """Blocking client of the supervisor front endpoint (thread-safe: one call at a time)."""

    def __init__(
        self, endpoint: str, timeout_s: float = FRONT_TIMEOUT_S, curve: CurveKeys | None = None
    ) -> None:
        self.endpoint = endpoint
        self._client = ControlClient(endpoint, timeout_s, curve=curve)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, state: ClusterState, timeout_s: float = FRONT_TIMEOUT_S) -> FrontClient:
        """A client of the front endpoint of the cluster ``state`` describes (with its CURVE
        key when the cluster has one)."""
        return cls(state.front, timeout_s, curve=state_curve(state))

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


def state_curve(state: ClusterState) -> CurveKeys | None:
    """The cluster's key pair when its control plane uses CURVE; raises ``ClusterUnreachable``
    when the key file named in the state cannot be read."""
    if not state.curve_key:
        return None
    try:
        return CurveKeys.load(state.curve_key)
    except KeyFileError as exc:
        raise ClusterUnreachable(str(exc)) from exc


def status_table(status: Mapping[str, Any]) -> str:
    """The human table of ``cluster.status``: one row per peer."""
    nodes = status.get("nodes", [])
    kinds = any(node.get("kind", "node") != "node" for node in nodes)
    hosts = any("host" in node for node in nodes)  # backends that place peers (swarm)
    header = ("node", "id", "control", "peers", "rt", "restarts", "health")
    rows = [header + (("kind",) if kinds else ()) + (("host",) if hosts else ())]
    for node in nodes:
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
            + ((str(node.get("kind", "node")),) if kinds else ())
            + ((str(node.get("host") or "-"),) if hosts else ())
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
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
    value = secrets.token_hex(16).encode()  # text: browser peers carry UTF-8 values
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
    progress: Progress = quiet,
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
