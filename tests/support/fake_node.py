"""The one fake node: an in-memory ``NodeAPI`` for control-plane, CLI and supervisor tests.

``FakeNode`` implements ``control.commands.NodeAPI`` (a dict store, fixed peers, no network),
so every fake answers through the real ``ControlServer`` and its argument validation. Test
hooks, chosen by key: ``store("boom")`` raises a plain ``RuntimeError`` (a node bug),
``store("noquorum")`` fails with ``quorum_not_met``, ``store/get("slow")`` sleep ``slow_s``
first. ``ping``/``connect`` fail with ``unreachable`` for ids outside ``peer_ids``.

For supervisor tests: values stored through one fake are visible from every other one that
shares ``shared_dir`` (formation probes and store/get round trips work without the real DHT);
``rt_size`` sets the routing table size it reports; ``publish`` (set by the server) receives
``record.stored`` and ``topic.peer`` events.

As a process (``python -m tests.support.fake_node``):
- ``fake-node --control EP --events EP [--data-dir D] [--stats-interval S]`` takes the real
  node's flags (unknown ones are ignored), prints its endpoints as one JSON line on stdout and
  ``fake node <id> on <endpoint>`` on stderr, keeps its id in ``D/fake.id``, reads
  ``FAKE_SHARED_DIR`` and ``FAKE_RT_SIZE`` (default 50), and stops on SIGTERM/SIGINT or
  ``shutdown``;
- ``fake-signaling --host H --port P`` listens and idles.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control.codec import pack, unpack
from control.commands import Result
from control.errors import CommandError, ErrorCode
from control.server import ControlServer

SHARED_DIR_ENV = "FAKE_SHARED_DIR"
FAKE_RT_SIZE_ENV = "FAKE_RT_SIZE"
FAKE_TS_MS = 1_700_000_000_000


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FakeNode:
    """In-memory ``NodeAPI`` (see the module docstring for its hooks)."""

    def __init__(
        self,
        seed: str = "fake-node",
        slow_s: float = 1.0,
        *,
        node_id: str | None = None,
        shared_dir: Path | None = None,
        rt_size: int | None = None,
    ) -> None:
        self.public_key = hashlib.sha256(seed.encode()).hexdigest()
        self.node_id = node_id or _sha256_hex(self.public_key)
        self.peer_ids = [_sha256_hex(f"{seed}-peer-{i}") for i in range(3)]
        self.records: dict[str, bytes] = {}
        self.joined: dict[str, dict[str, Any]] = {}
        self.announcements: dict[str, list[dict[str, Any]]] = {}
        self.slow_s = slow_s
        self.shared_dir = shared_dir
        self.rt_size = len(self.peer_ids) if rt_size is None else rt_size
        self.shutdown_requested = asyncio.Event()
        self.publish: Callable[[str, dict[str, Any]], None] = lambda topic, payload: None
        self._started = time.monotonic()

    def _shared_path(self, key: str) -> Path | None:
        return None if self.shared_dir is None else self.shared_dir / _sha256_hex(key)

    def _known(self, node_id: str) -> None:
        if node_id not in self.peer_ids:
            raise CommandError(ErrorCode.UNREACHABLE, f"node {node_id[:8]} is not reachable")

    async def id(self) -> Result:
        return {"id": self.node_id, "public_key": self.public_key}

    async def peers(self) -> Result:
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

    async def rt(self) -> Result:
        return {"size": self.rt_size, "buckets_used": 1}

    async def dump(self) -> Result:
        contacts = [{"id": p, "last_seen_s_ago": 1.0} for p in self.peer_ids]
        return {
            "id": self.node_id,
            "buckets": [{"index": 0, "contacts": contacts, "replacements": []}],
        }

    async def ping(self, *, node_id: str) -> Result:
        self._known(node_id)
        return {"id": node_id, "rtt_ms": 1.25}

    async def find(self, *, node_id: str) -> Result:
        closest = sorted(self.peer_ids, key=lambda p: int(p, 16) ^ int(node_id, 16))
        return {"target": node_id, "closest": closest, "hops": 1, "duration_ms": 2.0}

    async def connect(self, *, node_id: str) -> Result:
        self._known(node_id)
        return {"id": node_id, "connected": True, "duration_ms": 3.0}

    async def disconnect(self, *, node_id: str) -> Result:
        self._known(node_id)
        return {"id": node_id, "disconnected": True}

    async def store(self, *, key: str, value: bytes) -> Result:
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
        path = self._shared_path(key)
        if path is not None:
            path.write_bytes(pack({"value": value, "publisher": self.node_id}))
        self.publish(
            "record.stored",
            {
                "key_id": numbers["key_id"],
                "key": key,
                "publisher": self.node_id,
                "record_ts": FAKE_TS_MS,
                "size": len(value),
                "cached": False,
                "origin": "local",
            },
        )
        return {**numbers, "duration_ms": 4.0}

    async def store_at(self, *, address: str, value: bytes) -> Result:
        self.records[address] = value
        return {"key_id": address, "address": address, "kind": "open", "acks": 3}

    async def put_mutable(
        self, *, name: bytes, value: bytes, seq: int | None, cas: int | None
    ) -> Result:
        address = hashlib.sha256(self.node_id.encode() + name).hexdigest()
        self.records[address] = value
        return {"address": address, "kind": "mutable", "seq": seq or 1, "acks": 3}

    async def put_immutable(self, *, value: bytes) -> Result:
        address = hashlib.sha256(value).hexdigest()
        self.records[address] = value
        return {"address": address, "kind": "immutable", "acks": 3}

    async def get_address(self, *, address: str) -> Result:
        if address not in self.records:
            raise CommandError(ErrorCode.NOT_FOUND, f"key not found: {address}")
        return {"address": address, "value": self.records[address], "kind": "open", "hops": 1}

    async def get(self, *, key: str) -> Result:
        if key == "slow":
            await asyncio.sleep(self.slow_s)
        found: dict[str, Any] | None = None
        if key in self.records:
            found = {"value": self.records[key], "publisher": self.node_id}
        elif (path := self._shared_path(key)) is not None and path.exists():
            found = unpack(path.read_bytes())
        if found is None:
            raise CommandError(ErrorCode.NOT_FOUND, f"key not found: {key}")
        return {
            "key": key,
            "key_id": _sha256_hex(key),
            "value": found["value"],
            "publisher": found["publisher"],
            "ts": FAKE_TS_MS,
            "hops": 1,
            "duration_ms": 2.5,
        }

    async def stats(self) -> Result:
        return {
            "id": self.node_id,
            "uptime_s": time.monotonic() - self._started,
            "messages_in": {"PING": 1},
            "messages_out": {"PONG": 1},
            "lookups": 0,
            "lookup_latency_ms": {"p50": 0.0, "p90": 0.0, "p99": 0.0},
            "store_size": len(self.records),
            "connections": len(self.peer_ids),
            "routing_table_size": self.rt_size,
            "dropped_malformed": 0,
            "topics_joined": len(self.joined),
        }

    def _discovered(self, topic: str, port: int | None, meta: dict[str, Any] | None) -> None:
        self.publish(
            "topic.peer",
            {
                "topic": topic,
                "topic_id": _sha256_hex(topic),
                "peer": self.node_id,
                "port": port,
                "meta": meta,
            },
        )

    async def announce(
        self, *, topic: str, port: int | None, meta: dict[str, Any] | None
    ) -> Result:
        self.announcements.setdefault(topic, []).append(
            {"id": self.node_id, "port": port, "meta": meta or {}, "ts": FAKE_TS_MS}
        )
        self._discovered(topic, port, meta)
        return {
            "topic": topic,
            "topic_id": _sha256_hex(topic),
            "acks": 3,
            "attempts": 3,
            "quorum": 2,
        }

    async def unannounce(self, *, topic: str) -> Result:
        left = self.announcements.pop(topic, None) is not None
        left = self.joined.pop(topic, None) is not None or left
        return {"topic": topic, "topic_id": _sha256_hex(topic), "left": left}

    async def lookup(self, *, topic: str) -> Result:
        return {
            "topic": topic,
            "topic_id": _sha256_hex(topic),
            "peers": list(self.announcements.get(topic, [])),
        }

    async def listen(self, *, key: str) -> Result:
        return {"key": key, "key_id": _sha256_hex(key), "new": True}

    async def unlisten(self, *, key: str) -> Result:
        return {"key": key, "key_id": _sha256_hex(key), "was_listening": True}

    async def join(self, *, topic: str, port: int | None, meta: dict[str, Any] | None) -> Result:
        self.joined[topic] = {"port": port, "meta": meta}
        self._discovered(topic, port, meta)
        return {"topic": topic, "topic_id": _sha256_hex(topic), "announcing": port is not None}

    async def topics(self) -> Result:
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

    async def shutdown(self) -> Result:
        self.shutdown_requested.set()
        return {"shutting_down": True}


class FakeNodeServer:
    """A ``FakeNode`` behind a real ``ControlServer``, inside the running event loop."""

    def __init__(
        self,
        control: str = "tcp://127.0.0.1:*",
        events: str = "tcp://127.0.0.1:*",
        stats_interval_s: float = 0.0,
        **node: Any,
    ) -> None:
        self.api = FakeNode(**node)
        self.server = ControlServer(self.api, control, events, node_id=self.api.node_id)
        self.api.publish = self.server.publish
        self.stats_interval_s = stats_interval_s
        self._stats_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.server.start()
        if self.stats_interval_s > 0:
            self._stats_task = asyncio.create_task(self._stats_loop())

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval_s)
            self.server.publish("node.stats", await self.api.stats())

    async def close(self, linger_ms: int = 0) -> None:
        if self._stats_task is not None:
            self._stats_task.cancel()
        await self.server.close(linger_ms)


def _fake_node_id(data_dir: str | None) -> str | None:
    if not data_dir:
        return None
    path = Path(data_dir) / "fake.id"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip()
    node_id = hashlib.sha256(os.urandom(32)).hexdigest()
    path.write_text(node_id)
    return node_id


async def _run_fake_node(ns: argparse.Namespace) -> None:
    shared = os.environ.get(SHARED_DIR_ENV)
    fake = FakeNodeServer(
        ns.control,
        ns.events,
        stats_interval_s=ns.stats_interval,
        node_id=_fake_node_id(ns.data_dir),
        shared_dir=Path(shared) if shared else None,
        rt_size=int(os.environ.get(FAKE_RT_SIZE_ENV, "50")),
    )
    await fake.start()
    server = fake.server
    print(json.dumps({"control": server.control_endpoint, "events": server.events_endpoint}))
    sys.stdout.flush()
    print(f"fake node {fake.api.node_id[:8]} on {server.control_endpoint}", file=sys.stderr)
    sys.stderr.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shutdown = asyncio.create_task(fake.api.shutdown_requested.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({shutdown, stopped}, return_when=asyncio.FIRST_COMPLETED)
    shutdown.cancel()
    stopped.cancel()
    await fake.close(linger_ms=100)


def _run_fake_signaling(ns: argparse.Namespace) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ns.host, ns.port))
        sock.listen(16)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"fake signaling on {ns.host}:{ns.port}", file=sys.stderr, flush=True)
        stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_node")
    sub = parser.add_subparsers(dest="what", required=True)
    node = sub.add_parser("fake-node")
    node.add_argument("--control", default="tcp://127.0.0.1:*")
    node.add_argument("--events", default="tcp://127.0.0.1:*")
    node.add_argument("--data-dir")
    node.add_argument("--stats-interval", type=float, default=1.0)
    sig = sub.add_parser("fake-signaling")
    sig.add_argument("--host", default="127.0.0.1")
    sig.add_argument("--port", type=int, required=True)
    ns, _unknown = parser.parse_known_args(argv)
    if ns.what == "fake-node":
        asyncio.run(_run_fake_node(ns))
    else:
        _run_fake_signaling(ns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
