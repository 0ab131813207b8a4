"""Cluster metrics: the last ``node.stats`` of every node, as a summary map and as Prometheus text.

Each supervisor owns its own ``CollectorRegistry`` (never the global one), so several supervisors
or tests in one interpreter do not collide. The HTTP exporter runs in prometheus_client's own
daemon thread; gauges are thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

NODE_GAUGES: dict[str, str] = {
    "routing_table_size": "Contacts in the node's routing table",
    "connections": "Open WebRTC connections",
    "store_size": "Records held by the node",
    "dropped_malformed": "Malformed messages dropped by the node",
    "lookups": "Lookups run by the node",
    "uptime_s": "Node uptime in seconds",
    "store_bytes": "Bytes the node's record store holds (quota accounting)",
    "refused_quota": "Writes the node refused for a quota",
    "rate_limited": "Requests the node refused as rate_limited",
    "rate_dropped": "Requests the node dropped unanswered (sender far over its rate)",
    "peers_banned": "Peers disconnected and refused for flooding requests",
}

LINK_PATHS = ("host", "srflx", "relay")  # node.transport.ice_path.LinkPath (no node import here)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _total(value: Any) -> float:
    if isinstance(value, Mapping):
        return float(sum(v for v in value.values() if _number(v) is not None))
    return _number(value) or 0.0


class ClusterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._node = {
            name: Gauge(f"dht_node_{name}", doc, ["index"], registry=self.registry)
            for name, doc in NODE_GAUGES.items()
        }
        self._messages_in = Gauge(
            "dht_node_messages_in",
            "Messages received by the node",
            ["index"],
            registry=self.registry,
        )
        self._messages_out = Gauge(
            "dht_node_messages_out", "Messages sent by the node", ["index"], registry=self.registry
        )
        self._links = Gauge(
            "dht_node_links",
            "Open links by network path (host / srflx / relay)",
            ["index", "path"],
            registry=self.registry,
        )
        self._nodes_up = Gauge("dht_cluster_nodes_up", "Peers answering", registry=self.registry)
        self._nodes_total = Gauge(
            "dht_cluster_nodes", "Peers in the cluster", registry=self.registry
        )
        self._restarts = Gauge(
            "dht_cluster_restarts_total", "Member restarts since start", registry=self.registry
        )
        self._last: dict[int, dict[str, Any]] = {}
        self._seen_at: dict[int, float] = {}
        self._server: Any = None

    def observe_stats(self, index: int, stats: Mapping[str, Any]) -> None:
        label = str(index)
        for name, gauge in self._node.items():
            value = _number(stats.get(name))
            if value is not None:
                gauge.labels(label).set(value)
        self._messages_in.labels(label).set(_total(stats.get("messages_in")))
        self._messages_out.labels(label).set(_total(stats.get("messages_out")))
        paths = stats.get("link_paths")
        if isinstance(paths, Mapping):
            for path in LINK_PATHS:
                self._links.labels(label, path).set(_number(paths.get(path)) or 0.0)
        self._last[index] = dict(stats)
        self._seen_at[index] = time.monotonic()

    def set_cluster(self, nodes_up: int, nodes_total: int, restarts_total: int) -> None:
        self._nodes_up.set(nodes_up)
        self._nodes_total.set(nodes_total)
        self._restarts.set(restarts_total)

    def forget(self, index: int) -> None:
        label = str(index)
        for gauge in (*self._node.values(), self._messages_in, self._messages_out):
            try:
                gauge.remove(label)
            except KeyError:
                pass
        for path in LINK_PATHS:
            try:
                self._links.remove(label, path)
            except KeyError:
                pass
        self._last.pop(index, None)
        self._seen_at.pop(index, None)

    def summary(self) -> dict[str, Any]:
        now = time.monotonic()
        nodes = {}
        totals = {
            "store_size": 0.0,
            "connections": 0.0,
            "messages_in": 0.0,
            "messages_out": 0.0,
            "dropped_malformed": 0.0,
        }
        for index, stats in sorted(self._last.items()):
            entry = {
                "routing_table_size": stats.get("routing_table_size"),
                "connections": stats.get("connections"),
                "store_size": stats.get("store_size"),
                "messages_in": _total(stats.get("messages_in")),
                "messages_out": _total(stats.get("messages_out")),
                "dropped_malformed": stats.get("dropped_malformed"),
                "lookup_latency_ms": stats.get("lookup_latency_ms"),
                "link_paths": stats.get("link_paths", {}),
                "age_s": round(now - self._seen_at[index], 3),
            }
            nodes[str(index)] = entry
            for key in totals:
                totals[key] += _number(entry.get(key)) or 0.0
        return {
            "nodes_up": int(self._nodes_up._value.get()),
            "nodes_total": int(self._nodes_total._value.get()),
            "restarts_total": int(self._restarts._value.get()),
            "totals": totals,
            "nodes": nodes,
        }

    def serve(self, host: str, port: int) -> None:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
