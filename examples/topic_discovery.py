"""Topic discovery on a local cluster: the second seed's scenario, on webrtc-dht.

Three "servers" announce themselves under ``my-app-v1`` with their service ports (active join,
like ``channel.join(topic, port)``); two "clients" join passively (``channel.join(topic)``) and
print every server they find, exactly once. Then a fourth server joins, and the clients find it
too, without being restarted: discovery keeps running.

    .venv/bin/python examples/topic_discovery.py            # starts (and removes) its own cluster

The peers talk WebRTC to each other; this script drives them through the supervisor.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor.cluster import Cluster

TOPIC = "my-app-v1"
SERVERS = {1: 9001, 2: 9002, 3: 9003}
LATE_SERVER = (6, 9004)
CLIENTS = (4, 5)


def collect(
    cluster: Cluster, client: int, want: set[str], timeout_s: float
) -> list[dict[str, Any]]:
    """``topic.peer`` events of ``client`` until every id in ``want`` was seen (or timeout)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    for event in cluster.node(client).discovered(TOPIC, timeout_s=timeout_s):
        seen.append(event)
        if want <= {e["peer"] for e in seen} or time.monotonic() > deadline:
            break
    return seen


def run(cluster: Cluster, timeout_s: float = 30.0) -> dict[int, list[dict[str, Any]]]:
    """Play the scenario; returns every ``topic.peer`` event each client received."""
    ids = {i: cluster.node(i).id() for i in (*SERVERS, *CLIENTS, LATE_SERVER[0])}
    for index, port in SERVERS.items():
        cluster.node(index).join(TOPIC, port=port, meta={"name": f"server-{index}"})
        print(f"server {index} ({ids[index][:8]}) announces {TOPIC} on port {port}")
    for client in CLIENTS:
        cluster.node(client).join(TOPIC)
        print(f"client {client} ({ids[client][:8]}) joins {TOPIC} passively")

    first = {ids[i] for i in SERVERS}
    events: dict[int, list[dict[str, Any]]] = {}
    for client in CLIENTS:
        events[client] = collect(cluster, client, first, timeout_s)
        for e in events[client]:
            print(f"client {client}: found server {e['peer'][:8]} on port {e['port']}")

    late, port = LATE_SERVER
    cluster.node(late).join(TOPIC, port=port, meta={"name": f"server-{late}"})
    print(f"server {late} ({ids[late][:8]}) joins later on port {port}")
    everyone = first | {ids[late]}
    for client in CLIENTS:
        more = collect(cluster, client, everyone, timeout_s)
        new = [e for e in more if e["peer"] not in {x["peer"] for x in events[client]}]
        for e in new:
            print(f"client {client}: found server {e['peer'][:8]} on port {e['port']}")
        events[client] = more
    return events


def main() -> None:
    with Cluster.up(peers=8, backend="process", node_args=["--discovery-interval", "2"]) as c:
        run(c)


if __name__ == "__main__":
    main()
