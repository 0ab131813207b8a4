"""The supervisor in-process, with the memory launcher and fake nodes on real ZeroMQ sockets:
front endpoint robustness, routing, fan-out, partial failures, concurrency, restarts, events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from control.codec import pack, unpack
from control.schema import MAX_REQUEST_BYTES
from supervisor.launcher import MemberHandle, MemberSpec, Role
from supervisor.memory import MemoryLauncher
from supervisor.spec import Backend, SupervisorConfig, argv_value
from supervisor.state import load_state
from supervisor.supervisor import Health, Supervisor
from tests.support.fake_node import FakeNodeServer

PEERS = 3


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.fakes: dict[str, FakeNodeServer] = {}
        self.closing: dict[int, asyncio.Task[None]] = {}  # by index: a restart reuses the ports
        self.tasks: set[asyncio.Task[None]] = set()
        self.launcher = MemoryLauncher(on_start=self.on_start, on_stop=self.on_stop)
        self.shared = tmp_path / "shared"
        self.shared.mkdir()
        self.config = SupervisorConfig(
            cluster="front-test",
            peers=PEERS,
            backend=Backend.MEMORY,
            state_root=tmp_path,
            front_port=0,
            events_port=0,
            metrics_port=0,
            signaling_port=0,
        )
        self.sup = Supervisor(self.config, self.launcher)

    def on_start(self, spec: MemberSpec, handle: MemberHandle) -> None:
        if spec.role is not Role.PEER:
            return
        control, events = argv_value(spec.argv, "--control"), argv_value(spec.argv, "--events")
        assert control
        assert events
        fake = FakeNodeServer(
            control,
            events,
            stats_interval_s=0.2,
            node_id=f"{spec.index:02d}" * 32,
            shared_dir=self.shared,
            rt_size=50,
            slow_s=2.0,  # store/get of key "slow"
        )
        self.fakes[handle.ref] = fake
        self._spawn(self._start_after_close(spec.index, fake))

    async def _start_after_close(self, index: int, fake: FakeNodeServer) -> None:
        closing = self.closing.pop(index, None)
        if closing is not None:
            await closing
        await fake.start()

    def on_stop(self, handle: MemberHandle) -> None:
        fake = self.fakes.pop(handle.ref, None)
        if fake is not None:
            self.closing[handle.index] = self._spawn(fake.close())

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def handle_of(self, index: int) -> MemberHandle:
        handle = self.sup.peers[index].handle
        assert handle is not None
        return handle


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    await h.sup.start()
    await wait_until(lambda: all(m.health is Health.UP for m in h.sup.peers.values()))
    yield h
    await h.sup.close()
    await asyncio.gather(*h.tasks, return_exceptions=True)
    for fake in list(h.fakes.values()):
        await fake.close()


async def wait_until(cond: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


class RawClient:
    """A DEALER that sends arbitrary frames (REQ envelope) to the front endpoint."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    async def send_frames(self, frames: list[bytes]) -> dict[str, Any]:
        await self.sock.send_multipart([b"", *frames])
        async with asyncio.timeout(10):
            reply = await self.sock.recv_multipart()
        assert reply[0] == b""
        decoded = unpack(reply[1])
        assert isinstance(decoded, dict)
        return decoded

    async def request(
        self, cmd: str, node: Any = None, rid: Any = 1, **args: Any
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"v": 1, "id": rid, "cmd": cmd, "args": args}
        if node is not None:
            msg["node"] = node
        return await self.send_frames([pack(msg)])

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[RawClient]:
    c = RawClient(harness.sup.front_endpoint)
    yield c
    c.close()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"\xc1garbage"], "bad_request"),
        ([pack([1, 2, 3])], "bad_request"),
        ([pack({"id": 1, "cmd": "id"})], "bad_request"),
        ([pack({"v": 2, "id": 1, "cmd": "id"})], "unsupported_version"),
        ([pack({"v": 1, "id": 1, "cmd": 5})], "bad_request"),
        ([pack({"v": 1, "id": 1, "cmd": "id", "args": [1]})], "bad_request"),
        ([pack({"v": 1, "id": 1, "cmd": "id", "node": "some"})], "bad_request"),
        ([pack({"v": 1, "id": 1, "cmd": "id"}), b"extra"], "bad_request"),
        ([b"x" * (MAX_REQUEST_BYTES + 1)], "too_large"),
        ([pack({"v": 1, "id": 1, "cmd": "cluster.nope"})], "unknown_command"),
        ([pack({"v": 1, "id": 1, "cmd": "cluster.kill", "args": {"index": "x"}})], "bad_args"),
        ([pack({"v": 1, "id": 1, "cmd": "cluster.scale", "args": {"peers": 0}})], "bad_args"),
    ],
)
async def test_garbage_gets_error_reply_and_server_keeps_serving(
    client: RawClient, frames: list[bytes], code: str
) -> None:
    reply = await client.send_frames(frames)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    after = await client.request("id", node=2, rid="after")
    assert after == {"v": 1, "id": "after", "ok": True, "result": after["result"]}
    assert after["result"]["id"] == "02" * 32


async def test_routes_to_node_one_by_default_and_to_index(client: RawClient) -> None:
    default = await client.request("id", rid=7)
    assert (default["id"], default["result"]["id"]) == (7, "01" * 32)
    third = await client.request("id", node=3)
    assert third["result"]["id"] == "03" * 32


async def test_unknown_index_is_bad_args(client: RawClient) -> None:
    reply = await client.request("id", node=PEERS + 1)
    assert reply["error"]["code"] == "bad_args"


async def test_node_errors_pass_through(client: RawClient) -> None:
    reply = await client.request("get", node=2, key="missing")
    assert reply["error"]["code"] == "not_found"
    reply = await client.request("frobnicate", node=2)
    assert reply["error"]["code"] == "unknown_command"


async def test_store_through_one_node_get_through_another(client: RawClient) -> None:
    stored = await client.request("store", node=1, key="k", value=b"v")
    assert stored["ok"] is True
    got = await client.request("get", node=3, key="k")
    assert got["result"]["value"] == b"v"


async def test_fan_out_with_partial_failure(harness: Harness, client: RawClient) -> None:
    harness.launcher.kill(harness.handle_of(2))
    await wait_until(lambda: harness.sup.peers[2].health is Health.DOWN)
    reply = await client.request("id", node="all", rid="fan")
    assert reply["ok"] is True
    results = reply["result"]["results"]
    assert set(results) == {"1", "2", "3"}
    assert results["1"] == {"ok": True, "result": results["1"]["result"]}
    assert results["3"]["result"]["id"] == "03" * 32
    assert results["2"]["ok"] is False
    assert results["2"]["error"]["code"] == "node_unavailable"
    direct = await client.request("id", node=2)
    assert direct["error"]["code"] == "node_unavailable"


async def test_slow_node_does_not_block_others(client: RawClient, harness: Harness) -> None:
    other = RawClient(harness.sup.front_endpoint)
    try:
        slow = asyncio.create_task(client.request("store", node=1, key="slow", value=b"x"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        fast = await other.request("id", node=2)
        assert fast["ok"] is True
        assert time.monotonic() - started < 1.0
        assert not slow.done()
        assert (await slow)["result"]["key"] == "slow"
    finally:
        other.close()


async def test_crashed_member_is_restarted_with_same_spec(
    harness: Harness, client: RawClient
) -> None:
    sub = harness.sup.ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"cluster.")
    sub.connect(harness.sup.events_endpoint)
    try:
        await asyncio.sleep(0.2)  # let the subscription reach the PUB
        old = harness.handle_of(2)
        spec_before = harness.sup.peers[2].spec
        harness.launcher.simulate_exit(old, 1)
        async with asyncio.timeout(10):
            while True:
                topic, payload = await sub.recv_multipart()
                event = unpack(payload)
                if topic == b"cluster.node_restarted" and event["index"] == 2:
                    break
        assert event["exit_code"] == 1
        assert harness.handle_of(2).ref != old.ref
        assert harness.sup.peers[2].spec == spec_before
        await wait_until(lambda: harness.sup.peers[2].health is Health.UP)
        reply = await client.request("id", node=2)
        assert reply["result"]["id"] == "02" * 32
        state = load_state("front-test", harness.config.state_root)
        assert state is not None
        record = state.node(2)
        assert record is not None
        assert (record.restarts, record.ref) == (1, harness.handle_of(2).ref)
    finally:
        sub.close(linger=0)


async def test_events_are_republished_with_index(harness: Harness, client: RawClient) -> None:
    sub = harness.sup.ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"record.stored")
    sub.connect(harness.sup.events_endpoint)
    try:
        await asyncio.sleep(0.2)
        await client.request("store", node=3, key="evt", value=b"x")
        async with asyncio.timeout(5):
            topic, payload = await sub.recv_multipart()
        event = unpack(payload)
        assert (topic, event["index"], event["key"]) == (b"record.stored", 3, "evt")
        assert event["node"] == "03" * 32
    finally:
        sub.close(linger=0)


async def test_status_scale_metrics(harness: Harness, client: RawClient) -> None:
    status = (await client.request("cluster.status"))["result"]
    assert [n["index"] for n in status["nodes"]] == [1, 2, 3]
    assert all(n["health"] == "up" and n["rt"] == 50 for n in status["nodes"])
    scaled = (await client.request("cluster.scale", peers=4))["result"]
    assert scaled == {"peers": 4, "added": [4], "removed": []}
    await wait_until(lambda: harness.sup.peers[4].health is Health.UP)
    assert (await client.request("id", node=4))["result"]["id"] == "04" * 32
    shrunk = (await client.request("cluster.scale", peers=2))["result"]
    assert shrunk == {"peers": 2, "added": [], "removed": [4, 3]}
    assert (await client.request("id", node=3))["error"]["code"] == "bad_args"
    await wait_until(lambda: "1" in harness.sup.metrics.summary()["nodes"])
    metrics = (await client.request("cluster.metrics"))["result"]
    assert metrics["nodes_total"] == 2
    assert metrics["nodes"]["1"]["routing_table_size"] == 50


async def test_kill_and_restart_commands(harness: Harness, client: RawClient) -> None:
    before = harness.handle_of(1).ref
    restarted = (await client.request("cluster.restart", index=1))["result"]
    assert restarted["restarts"] == 1
    assert restarted["ref"] != before
    killed = (await client.request("cluster.kill", index=3))["result"]
    assert killed["killed"] is True
    await wait_until(lambda: harness.sup.peers[3].restarts == 1)
    with contextlib.suppress(Exception):
        await wait_until(lambda: harness.sup.peers[3].health is Health.UP)
    assert (await client.request("cluster.kill", index=99))["error"]["code"] == "bad_args"


async def test_the_state_file_records_every_running_peer_id(harness: Harness) -> None:
    # The fakes publish node.stats every 0.2 s, before the 1 s health check asks for the id:
    # the event forwarder learns each id first, and must write it to cluster.json.
    expected = {i: f"{i:02d}" * 32 for i in range(1, PEERS + 1)}
    await wait_until(lambda: {i: m.node_id for i, m in harness.sup.peers.items()} == expected)
    state = load_state(harness.config.cluster, harness.config.state_root)
    assert state is not None
    assert {n.index: n.id for n in state.nodes} == expected
