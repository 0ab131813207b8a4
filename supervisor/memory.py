"""Test doubles: ``MemoryLauncher`` and fake cluster members.

``MemoryLauncher`` runs nothing; it records members and lets tests decide their fate
(``simulate_exit``). Two test hooks are read from ``MemberSpec.env`` at start:
``MEMORY_EXIT_CODE`` (the member exits at once with that code) and ``MEMORY_OUTPUT`` (lines of log
output). ``on_start``/``on_stop`` callbacks let a test attach a fake node to a "started" member.

Fake members are real processes for the process launcher (``python -m supervisor.memory
fake-node ...`` takes the node's flags; ``fake-signaling --host H --port P`` listens and idles). The
fake node speaks the control protocol on its control endpoint and publishes events; values stored
through one fake node are visible from every other one that shares ``FAKE_SHARED_DIR``, so
formation probes and store/get round trips work without the real DHT. ``FakeNodeServer`` runs the
same thing inside a test's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from supervisor.errors import LaunchError
from supervisor.front import (
    ErrorCode,
    FrontServer,
    Request,
    RequestError,
    ok_reply,
    pack,
    unpack,
)
from supervisor.launcher import MemberHandle, MemberSpec, MemberState

EXIT_CODE_ENV = "MEMORY_EXIT_CODE"
OUTPUT_ENV = "MEMORY_OUTPUT"
SHARED_DIR_ENV = "FAKE_SHARED_DIR"
FAKE_RT_SIZE_ENV = "FAKE_RT_SIZE"
KILLED_EXIT_CODE = -9


@dataclass(slots=True)
class _Member:
    spec: MemberSpec
    handle: MemberHandle
    state: MemberState = MemberState.RUNNING
    exit_code: int | None = None
    output: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MemoryRegistry:
    """What several ``MemoryLauncher`` instances share (stands in for the OS / the engine)."""

    members: dict[str, _Member] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryLauncher:
    name = "memory"

    def __init__(
        self,
        registry: MemoryRegistry | None = None,
        on_start: Callable[[MemberSpec, MemberHandle], None] | None = None,
        on_stop: Callable[[MemberHandle], None] | None = None,
    ) -> None:
        self.registry = registry or MemoryRegistry()
        self.on_start = on_start
        self.on_stop = on_stop
        self.started: list[MemberSpec] = []

    def start(self, spec: MemberSpec) -> MemberHandle:
        if not spec.argv:
            raise LaunchError(f"{spec.role} {spec.index}: empty command")
        with self.registry.lock:
            ref = f"mem-{next(self.registry.counter)}"
            handle = MemberHandle(spec.cluster, spec.role, spec.index, ref)
            member = _Member(spec, handle)
            if spec.env.get(OUTPUT_ENV):
                member.output = [line + "\n" for line in spec.env[OUTPUT_ENV].splitlines()]
            if spec.env.get(EXIT_CODE_ENV):
                member.state = MemberState.EXITED
                member.exit_code = int(spec.env[EXIT_CODE_ENV])
            self.registry.members[ref] = member
            self.started.append(spec)
        if self.on_start is not None and member.state is MemberState.RUNNING:
            self.on_start(spec, handle)
        return handle

    def _member(self, handle: MemberHandle) -> _Member | None:
        return self.registry.members.get(handle.ref)

    def state(self, handle: MemberHandle) -> MemberState:
        member = self._member(handle)
        return member.state if member is not None else MemberState.MISSING

    def exit_code(self, handle: MemberHandle) -> int | None:
        member = self._member(handle)
        return member.exit_code if member is not None else None

    def simulate_exit(self, handle: MemberHandle, code: int) -> None:
        """The member exits on its own (a crash when ``code != 0``)."""
        self._end(handle, code)

    def _end(self, handle: MemberHandle, code: int) -> None:
        member = self._member(handle)
        if member is None or member.state is not MemberState.RUNNING:
            return
        member.state = MemberState.EXITED
        member.exit_code = code
        if self.on_stop is not None:
            self.on_stop(handle)

    def stop(self, handle: MemberHandle, timeout_s: float = 10.0) -> None:
        self._end(handle, 0)

    def kill(self, handle: MemberHandle) -> None:
        self._end(handle, KILLED_EXIT_CODE)

    def logs(
        self, handle: MemberHandle, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        member = self._member(handle)
        if member is None:
            raise LaunchError(f"no such member {handle.ref}")
        lines = list(member.output)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return iter(lines)

    def find(self, cluster: str) -> list[MemberHandle]:
        with self.registry.lock:
            return [m.handle for m in self.registry.members.values() if m.handle.cluster == cluster]

    def remove_cluster(self, cluster: str) -> None:
        for handle in self.find(cluster):
            self.stop(handle)
            self.registry.members.pop(handle.ref, None)


# -- fake members ------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeNodeApi:
    """Just enough of the node's control API for supervisor tests."""

    def __init__(self, node_id: str, shared_dir: Path | None, rt_size: int) -> None:
        self.node_id = node_id
        self.shared_dir = shared_dir
        self.rt_size = rt_size
        self.local: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.publish: Callable[[str, dict[str, Any]], None] = lambda topic, payload: None
        self.topics: dict[str, int | None] = {}

    def _key_path(self, key: str) -> Path | None:
        if self.shared_dir is None:
            return None
        return self.shared_dir / hashlib.sha256(key.encode()).hexdigest()

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "uptime_s": time.monotonic() - self.started,
            "messages_in": {"PING": 1},
            "messages_out": {"PONG": 1},
            "lookups": 0,
            "lookup_latency_ms": {"p50": 0.0, "p90": 0.0, "p99": 0.0},
            "store_size": len(self.local),
            "connections": self.rt_size,
            "routing_table_size": self.rt_size,
            "dropped_malformed": 0,
            "topics_joined": len(self.topics),
        }

    async def handle(self, req: Request) -> dict[str, Any]:
        args = req.args
        cmd = req.cmd
        if cmd == "id":
            return ok_reply(req.id, {"id": self.node_id, "public_key": b"\x00" * 32})
        if cmd == "rt":
            return ok_reply(req.id, {"size": self.rt_size, "buckets_used": 1})
        if cmd == "peers":
            return ok_reply(req.id, {"peers": []})
        if cmd == "ping":
            return ok_reply(req.id, {"id": args.get("node_id"), "rtt_ms": 0.1})
        if cmd == "stats":
            return ok_reply(req.id, self.stats())
        if cmd == "sleep":
            await asyncio.sleep(float(args.get("s", 1.0)))
            return ok_reply(req.id, {"slept": True})
        if cmd == "store":
            key, value = args.get("key"), args.get("value")
            if not isinstance(key, str) or not isinstance(value, bytes):
                raise RequestError(ErrorCode.BAD_ARGS, "store needs key: str, value: bytes", req.id)
            record = {"value": value, "publisher": self.node_id, "ts": _now_ms(), "hops": 1}
            self.local[key] = record
            path = self._key_path(key)
            if path is not None:
                path.write_bytes(pack(record))
            key_id = hashlib.sha256(key.encode()).hexdigest()
            self.publish(
                "record.stored",
                {
                    "key_id": key_id,
                    "key": key,
                    "publisher": self.node_id,
                    "record_ts": record["ts"],
                    "size": len(value),
                    "cached": False,
                    "origin": "local",
                },
            )
            return ok_reply(
                req.id,
                {
                    "key": key,
                    "key_id": key_id,
                    "acks": 3,
                    "attempts": 3,
                    "quorum": 2,
                    "duration_ms": 1.0,
                },
            )
        if cmd == "get":
            key = args.get("key")
            if not isinstance(key, str):
                raise RequestError(ErrorCode.BAD_ARGS, "get needs key: str", req.id)
            path = self._key_path(key)
            found: dict[str, Any] | None = self.local.get(key)
            if found is None and path is not None and path.exists():
                found = unpack(path.read_bytes())
            if found is None:
                raise RequestError(ErrorCode.NOT_FOUND, f"no value for {key!r}", req.id)
            return ok_reply(
                req.id,
                {
                    "key": key,
                    "key_id": hashlib.sha256(key.encode()).hexdigest(),
                    **found,
                    "duration_ms": 1.0,
                },
            )
        if cmd in ("announce", "join"):
            topic = args.get("topic")
            if not isinstance(topic, str):
                raise RequestError(ErrorCode.BAD_ARGS, "topic must be a string", req.id)
            self.topics[topic] = args.get("port")
            topic_id = hashlib.sha256(topic.encode()).hexdigest()
            self.publish(
                "topic.peer",
                {
                    "topic": topic,
                    "topic_id": topic_id,
                    "peer": self.node_id,
                    "port": args.get("port"),
                    "meta": args.get("meta"),
                },
            )
            if cmd == "join":
                return ok_reply(req.id, {"topic": topic, "topic_id": topic_id, "announcing": True})
            return ok_reply(
                req.id,
                {"topic": topic, "topic_id": topic_id, "acks": 1, "attempts": 1, "quorum": 1},
            )
        if cmd == "unannounce":
            topic = str(args.get("topic"))
            left = self.topics.pop(topic, "absent") != "absent"
            return ok_reply(req.id, {"topic": topic, "topic_id": "", "left": left})
        if cmd == "topics":
            return ok_reply(
                req.id,
                {
                    "topics": [
                        {
                            "topic": t,
                            "topic_id": "",
                            "announcing": True,
                            "port": p,
                            "peers_known": 0,
                        }
                        for t, p in self.topics.items()
                    ]
                },
            )
        if cmd == "shutdown":
            asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
            return ok_reply(req.id, {"shutting_down": True})
        raise RequestError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {cmd!r}", req.id)


class FakeNodeServer:
    """A fake node bound to ``control``/``events`` inside the running event loop."""

    def __init__(
        self,
        control: str,
        events: str,
        node_id: str | None = None,
        shared_dir: Path | None = None,
        rt_size: int = 50,
        stats_interval_s: float = 0.0,
    ) -> None:
        self.ctx = zmq.asyncio.Context()
        self.api = FakeNodeApi(node_id or os.urandom(32).hex(), shared_dir, rt_size)
        self.front = FrontServer(self.ctx, control, self.api.handle)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.events_endpoint = events
        self.stats_interval_s = stats_interval_s
        self._tasks: list[asyncio.Task[None]] = []
        self.api.publish = self.publish_event

    def publish_event(self, topic: str, payload: dict[str, Any]) -> None:
        body = {"ts": _now_ms(), "node": self.api.node_id, **payload}
        with contextlib.suppress(zmq.ZMQError):
            self.pub.send_multipart([topic.encode(), pack(body)], flags=zmq.NOBLOCK)

    async def start(self) -> None:
        self.front.bind()
        self.pub.bind(self.events_endpoint)
        self._tasks.append(asyncio.create_task(self.front.serve()))
        if self.stats_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._stats_loop()))

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval_s)
            self.publish_event("node.stats", self.api.stats())

    def close_now(self) -> None:
        """Release the endpoints at once (from synchronous callbacks)."""
        for task in self._tasks:
            task.cancel()
        self.ctx.destroy(linger=0)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.front.close()
        self.ctx.destroy(linger=0)


def _fake_node_id(data_dir: str | None) -> str:
    if not data_dir:
        return os.urandom(32).hex()
    path = Path(data_dir) / "fake.id"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip()
    node_id = hashlib.sha256(os.urandom(32)).hexdigest()
    path.write_text(node_id)
    return node_id


async def _run_fake_node(ns: argparse.Namespace) -> None:
    shared = os.environ.get(SHARED_DIR_ENV)
    server = FakeNodeServer(
        ns.control,
        ns.events,
        node_id=_fake_node_id(ns.data_dir),
        shared_dir=Path(shared) if shared else None,
        rt_size=int(os.environ.get(FAKE_RT_SIZE_ENV, "50")),
        stats_interval_s=ns.stats_interval,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f"fake node {server.api.node_id[:8]} on {ns.control}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.close()


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
    parser = argparse.ArgumentParser(prog="python -m supervisor.memory")
    sub = parser.add_subparsers(dest="what", required=True)
    node = sub.add_parser("fake-node")
    node.add_argument("--control", required=True)
    node.add_argument("--events", required=True)
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
