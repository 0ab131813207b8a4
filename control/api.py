"""What the node offers the control plane: ``NodeAPI``, and an in-memory stand-in.

The node runtime implements ``NodeAPI``; ``ControlServer`` validates arguments against
``control.schema`` and then calls the method named after the command with keyword arguments.
Methods return the result map of docs/interfaces.md and raise ``CommandError`` for failures.
``help`` is answered by the server from the schema, so it is not part of the protocol.

``FakeNodeAPI`` is a small in-memory implementation with the same result shapes, for tests of
the control plane, the CLI and its benchmark (no networking, no DHT).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Protocol

from control.errors import CommandError
from control.schema import ErrorCode


class NodeAPI(Protocol):
    async def id(self) -> dict[str, Any]: ...
    async def peers(self) -> dict[str, Any]: ...
    async def rt(self) -> dict[str, Any]: ...
    async def dump(self) -> dict[str, Any]: ...
    async def ping(self, *, node_id: str) -> dict[str, Any]: ...
    async def find(self, *, node_id: str) -> dict[str, Any]: ...
    async def connect(self, *, node_id: str) -> dict[str, Any]: ...
    async def disconnect(self, *, node_id: str) -> dict[str, Any]: ...
    async def store(self, *, key: str, value: bytes) -> dict[str, Any]: ...
    async def get(self, *, key: str) -> dict[str, Any]: ...
    async def stats(self) -> dict[str, Any]: ...
    async def announce(
        self, *, topic: str, port: int | None, meta: dict[str, Any] | None
    ) -> dict[str, Any]: ...
    async def unannounce(self, *, topic: str) -> dict[str, Any]: ...
    async def lookup(self, *, topic: str) -> dict[str, Any]: ...
    async def join(
        self, *, topic: str, port: int | None, meta: dict[str, Any] | None
    ) -> dict[str, Any]: ...
    async def topics(self) -> dict[str, Any]: ...
    async def shutdown(self) -> dict[str, Any]: ...


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FakeNodeAPI:
    """In-memory ``NodeAPI``: a dict store, fixed peers, no network.

    Test hooks, chosen by key: ``store("boom")`` raises a plain ``RuntimeError`` (a node bug),
    ``store("noquorum")`` fails with ``quorum_not_met``, ``store/get("slow")`` sleep ``slow_s``
    first. ``ping``/``connect`` fail with ``unreachable`` for ids outside ``peer_ids``.
    """

    def __init__(self, seed: str = "fake-node", slow_s: float = 1.0) -> None:
        self.public_key = hashlib.sha256(seed.encode()).hexdigest()
        self.node_id = _sha256_hex(self.public_key)
        self.peer_ids = [_sha256_hex(f"{seed}-peer-{i}") for i in range(3)]
        self.records: dict[str, bytes] = {}
        self.joined: dict[str, dict[str, Any]] = {}
        self.announcements: dict[str, list[dict[str, Any]]] = {}
        self.slow_s = slow_s
        self.shutdown_requested = asyncio.Event()
        self._started = time.monotonic()
        self.calls: list[str] = []

    async def id(self) -> dict[str, Any]:
        self.calls.append("id")
        return {"id": self.node_id, "public_key": self.public_key}

    async def peers(self) -> dict[str, Any]:
        return {
            "peers": [
                {
                    "id": p,
                    "rtt_ms": 1.5 * (i + 1),
                    "connected_for_s": 10.0,
                    "in_routing_table": True,
                }
                for i, p in enumerate(self.peer_ids)
            ]
        }

    async def rt(self) -> dict[str, Any]:
        return {"size": len(self.peer_ids), "buckets_used": 1}

    async def dump(self) -> dict[str, Any]:
        contacts = [{"id": p, "last_seen_s_ago": 1.0} for p in self.peer_ids]
        return {
            "id": self.node_id,
            "buckets": [{"index": 0, "contacts": contacts, "replacements": []}],
        }

    def _known(self, node_id: str) -> None:
        if node_id not in self.peer_ids:
            raise CommandError(ErrorCode.UNREACHABLE, f"node {node_id[:8]} is not reachable")

    async def ping(self, *, node_id: str) -> dict[str, Any]:
        self._known(node_id)
        return {"id": node_id, "rtt_ms": 1.25}

    async def find(self, *, node_id: str) -> dict[str, Any]:
        closest = sorted(self.peer_ids, key=lambda p: int(p, 16) ^ int(node_id, 16))
        return {"target": node_id, "closest": closest, "hops": 1, "duration_ms": 2.0}

    async def disconnect(self, *, node_id: str) -> dict[str, Any]:
        self._known(node_id)
        return {"id": node_id, "disconnected": True}

    async def connect(self, *, node_id: str) -> dict[str, Any]:
        self._known(node_id)
        return {"id": node_id, "connected": True, "duration_ms": 3.0}

    async def store(self, *, key: str, value: bytes) -> dict[str, Any]:
        if key == "boom":
            raise RuntimeError("simulated bug in the node")
        if key == "slow":
            await asyncio.sleep(self.slow_s)
        numbers = {"key": key, "key_id": _sha256_hex(key), "acks": 3, "attempts": 3, "quorum": 2}
        if key == "noquorum":
            raise CommandError(
                ErrorCode.QUORUM_NOT_MET,
                "stored on 1 of 3 nodes, quorum is 2",
                {**numbers, "acks": 1, "duration_ms": 5.0},
            )
        self.records[key] = value
        return {**numbers, "duration_ms": 4.0}

    async def get(self, *, key: str) -> dict[str, Any]:
        if key == "slow":
            await asyncio.sleep(self.slow_s)
        if key not in self.records:
            raise CommandError(ErrorCode.NOT_FOUND, f"key not found: {key}")
        return {
            "key": key,
            "key_id": _sha256_hex(key),
            "value": self.records[key],
            "publisher": self.node_id,
            "ts": 1_700_000_000_000,
            "hops": 1,
            "duration_ms": 2.5,
        }

    async def stats(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "uptime_s": time.monotonic() - self._started,
            "messages_in": {"PING": 1},
            "messages_out": {"PONG": 1},
            "lookups": 0,
            "lookup_latency_ms": {"p50": 0.0, "p90": 0.0, "p99": 0.0},
            "store_size": len(self.records),
            "connections": len(self.peer_ids),
            "routing_table_size": len(self.peer_ids),
            "dropped_malformed": 0,
            "topics_joined": len(self.joined),
        }

    async def announce(
        self, *, topic: str, port: int | None, meta: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.announcements.setdefault(topic, []).append(
            {"id": self.node_id, "port": port, "meta": meta or {}, "ts": 1_700_000_000_000}
        )
        return {
            "topic": topic,
            "topic_id": _sha256_hex(topic),
            "acks": 3,
            "attempts": 3,
            "quorum": 2,
        }

    async def unannounce(self, *, topic: str) -> dict[str, Any]:
        left = self.announcements.pop(topic, None) is not None
        left = self.joined.pop(topic, None) is not None or left
        return {"topic": topic, "topic_id": _sha256_hex(topic), "left": left}

    async def lookup(self, *, topic: str) -> dict[str, Any]:
        return {
            "topic": topic,
            "topic_id": _sha256_hex(topic),
            "peers": list(self.announcements.get(topic, [])),
        }

    async def join(
        self, *, topic: str, port: int | None, meta: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.joined[topic] = {"port": port, "meta": meta}
        return {"topic": topic, "topic_id": _sha256_hex(topic), "announcing": port is not None}

    async def topics(self) -> dict[str, Any]:
        names = sorted(set(self.joined) | set(self.announcements))
        return {
            "topics": [
                {
                    "topic": t,
                    "topic_id": _sha256_hex(t),
                    "announcing": t in self.announcements
                    or self.joined.get(t, {}).get("port") is not None,
                    "port": self.joined.get(t, {}).get("port"),
                    "peers_known": len(self.announcements.get(t, [])),
                }
                for t in names
            ]
        }

    async def shutdown(self) -> dict[str, Any]:
        self.shutdown_requested.set()
        return {"shutting_down": True}
