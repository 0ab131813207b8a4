"""ControlServer and clients over real ZeroMQ sockets on 127.0.0.1, with FakeNode."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgpack
import pytest
import zmq
import zmq.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.client import (
    AsyncControlClient,
    AsyncEventSubscriber,
    ControlClient,
    EventSubscriber,
)
from control.codec import pack, unpack
from control.errors import RemoteError, Timeout, Unreachable
from control.schema import COMMANDS, MAX_REQUEST_BYTES, MAX_VALUE_BYTES
from control.server import ControlServer, ThreadedControlServer
from tests.support.fake_node import FakeNode
from tests.support.procs import free_port

REPLY_TIMEOUT_S = 5.0
PEER = FakeNode().peer_ids[0]


@pytest.fixture
async def server() -> AsyncIterator[ControlServer]:
    api = FakeNode(slow_s=1.0)
    srv = ControlServer(api, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", node_id=api.node_id)
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def dealer(server: ControlServer) -> AsyncIterator[zmq.asyncio.Socket]:
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.control_endpoint)
    yield sock
    sock.close(linger=0)


async def raw(sock: zmq.asyncio.Socket, *body: bytes) -> dict[str, Any]:
    """Send one REQ-style request with the given body frames; return the decoded reply."""
    await sock.send_multipart([b"", *body])
    frames = await asyncio.wait_for(sock.recv_multipart(), REPLY_TIMEOUT_S)
    assert len(frames) == 2
    assert frames[0] == b""
    reply = unpack(frames[1])
    assert isinstance(reply, dict)
    return reply


def req(cmd: str, rid: Any = 1, **args: Any) -> bytes:
    return pack({"v": 1, "id": rid, "cmd": cmd, "args": args})


GARBAGE: list[tuple[str, list[bytes], str]] = [
    ("random bytes", [b"\xc1\xff\x00garbage"], "bad_request"),
    ("empty frame", [b""], "bad_request"),
    ("truncated msgpack", [pack({"v": 1, "cmd": "id"})[:-2]], "bad_request"),
    ("trailing bytes", [pack({"v": 1, "cmd": "id"}) + b"\x00"], "bad_request"),
    ("a list", [pack([1, "id", {}])], "bad_request"),
    ("an int", [pack(42)], "bad_request"),
    ("a string", [pack("id")], "bad_request"),
    ("map without cmd", [pack({"v": 1, "id": 7, "args": {}})], "bad_request"),
    ("map without v", [pack({"id": 7, "cmd": "id"})], "bad_request"),
    ("wrong v", [pack({"v": 2, "id": 7, "cmd": "id"})], "unsupported_version"),
    ("v not an int", [pack({"v": "1", "id": 7, "cmd": "id"})], "bad_request"),
    ("cmd not a string", [pack({"v": 1, "cmd": 5})], "bad_request"),
    ("args not a map", [pack({"v": 1, "cmd": "id", "args": [1]})], "bad_request"),
    ("bad node field", [pack({"v": 1, "cmd": "id", "node": 0})], "bad_request"),
    ("int map keys", [msgpack.packb({1: 2})], "bad_request"),
    ("ext type", [msgpack.packb(msgpack.ExtType(5, b"x"))], "bad_request"),
    ("timestamp", [msgpack.packb(msgpack.Timestamp(1, 0))], "bad_request"),
    ("deep nesting", [b"\x91" * 5000 + b"\x00"], "bad_request"),
    ("multipart", [req("id"), req("id")], "bad_request"),
    ("no body", [], "bad_request"),
    ("unknown command", [req("fly")], "unknown_command"),
    ("missing arg", [req("get")], "bad_args"),
    ("arg wrong type", [req("get", key=5)], "bad_args"),
    ("empty key", [req("get", key="")], "bad_args"),
    ("unknown arg", [req("get", key="k", kye="k")], "bad_args"),
    ("value not bytes", [req("store", key="k", value="text")], "bad_args"),
    ("bad node id", [req("ping", node_id="abc")], "bad_args"),
    ("node id not hex", [req("ping", node_id="z" * 64)], "bad_args"),
    ("port out of range", [req("announce", topic="t", port=70000)], "bad_args"),
    ("port is bool", [req("announce", topic="t", port=True)], "bad_args"),
    ("meta not a map", [req("announce", topic="t", meta=[1])], "bad_args"),
    ("key too long", [req("get", key="k" * 1025)], "bad_args"),
    ("value 40 KiB", [req("store", key="k", value=b"x" * 40 * 1024)], "too_large"),
    ("frame > 1 MiB", [req("store", key="k", value=b"x" * (MAX_REQUEST_BYTES + 1))], "too_large"),
]


@pytest.mark.parametrize(
    ("body", "code"), [(g[1], g[2]) for g in GARBAGE], ids=[g[0] for g in GARBAGE]
)
async def test_garbage_gets_the_right_error_then_server_still_works(
    dealer: zmq.asyncio.Socket, body: list[bytes], code: str
) -> None:
    reply = await raw(dealer, *body)
    assert reply["ok"] is False
    assert reply["v"] == 1
    assert reply["error"]["code"] == code
    assert isinstance(reply["error"]["message"], str)
    assert reply["error"]["message"]

    ok = await raw(dealer, req("id", rid="after"))
    assert ok["ok"] is True
    assert ok["id"] == "after"
    assert set(ok["result"]) == {"id", "public_key"}


async def test_error_reply_echoes_request_id(dealer: zmq.asyncio.Socket) -> None:
    reply = await raw(dealer, pack({"v": 1, "id": 99, "cmd": "nope"}))
    assert reply == {
        "v": 1,
        "id": 99,
        "ok": False,
        "error": {"code": "unknown_command", "message": "unknown command 'nope' (try 'help')"},
    }


async def test_dealer_without_delimiter_is_answered(server: ControlServer) -> None:
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.control_endpoint)
    try:
        await sock.send(req("rt", rid=3))
        frames = await asyncio.wait_for(sock.recv_multipart(), REPLY_TIMEOUT_S)
    finally:
        sock.close(linger=0)
    assert len(frames) == 1
    assert unpack(frames[0]) == {
        "v": 1,
        "id": 3,
        "ok": True,
        "result": {"size": 3, "buckets_used": 1},
    }


async def test_command_error_carries_code_and_details(dealer: zmq.asyncio.Socket) -> None:
    reply = await raw(dealer, req("store", key="noquorum", value=b"v"))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "quorum_not_met"
    assert reply["error"]["details"]["acks"] == 1
    assert reply["error"]["details"]["quorum"] == 2


async def test_api_crash_is_internal_and_node_stays_up(
    server: ControlServer, dealer: zmq.asyncio.Socket, caplog: pytest.LogCaptureFixture
) -> None:
    reply = await raw(dealer, req("store", key="boom", value=b"v"))
    assert reply["error"] == {"code": "internal", "message": "internal error: RuntimeError"}
    assert server.internal_errors == 1
    assert "simulated bug in the node" in caplog.text
    assert (await raw(dealer, req("rt")))["ok"] is True


async def test_help_lists_every_command(dealer: zmq.asyncio.Socket) -> None:
    reply = await raw(dealer, req("help"))
    names = [c["name"] for c in reply["result"]["commands"]]
    assert names == list(COMMANDS)
    store = next(c for c in reply["result"]["commands"] if c["name"] == "store")
    assert [a["name"] for a in store["args"]] == ["key", "value"]


async def test_store_then_get_roundtrip(dealer: zmq.asyncio.Socket) -> None:
    value = b"\x00\xffbinary" * 100
    stored = await raw(dealer, req("store", key="k", value=value))
    assert stored["ok"] is True
    assert stored["result"]["acks"] == 3
    got = await raw(dealer, req("get", key="k"))
    assert got["result"]["value"] == value
    assert got["result"]["key"] == "k"
    max_value = await raw(dealer, req("store", key="max", value=b"m" * MAX_VALUE_BYTES))
    assert max_value["ok"] is True


async def test_slow_command_does_not_block_other_clients(server: ControlServer) -> None:
    slow = AsyncControlClient(server.control_endpoint, timeout_s=5)
    fast = AsyncControlClient(server.control_endpoint, timeout_s=5)
    try:
        slow_task = asyncio.create_task(slow.call("get", key="slow"))
        started = time.monotonic()
        result = await fast.call("rt")
        fast_elapsed = time.monotonic() - started
        assert result == {"size": 3, "buckets_used": 1}
        assert not slow_task.done()
        assert fast_elapsed < 0.5
        with pytest.raises(RemoteError) as err:
            await slow_task
        assert err.value.code == "not_found"
        assert time.monotonic() - started >= 1.0
    finally:
        await slow.close()
        await fast.close()


async def test_async_client_multiplexes_concurrent_calls(server: ControlServer) -> None:
    async with AsyncControlClient(server.control_endpoint) as client:
        slow = asyncio.create_task(client.call("get", key="slow"))
        results = await asyncio.gather(*(client.call("ping", node_id=PEER) for _ in range(20)))
        assert all(r == {"id": PEER, "rtt_ms": 1.25} for r in results)
        assert not slow.done()
        with pytest.raises(RemoteError):
            await slow


async def test_async_client_unreachable_is_fast() -> None:
    port = free_port()
    async with AsyncControlClient(f"tcp://127.0.0.1:{port}", timeout_s=5) as client:
        started = time.monotonic()
        with pytest.raises(Unreachable):
            await client.call("id")
        assert time.monotonic() - started < 2.0


async def test_async_client_times_out_then_recovers(server: ControlServer) -> None:
    async with AsyncControlClient(server.control_endpoint, timeout_s=0.3) as client:
        with pytest.raises(Timeout):
            await client.call("get", key="slow")
        assert (await client.call("rt"))["size"] == 3


async def test_publish_adds_ts_and_node(server: ControlServer) -> None:
    sub = AsyncEventSubscriber(server.events_endpoint, ["peer."])
    try:
        before = int(time.time() * 1000)
        # PUB/SUB has no handshake: publish until the subscription is in place.
        for _ in range(200):
            server.publish("node.stats", {"x": 0})  # filtered out by the prefix
            server.publish("peer.connected", {"peer": PEER})
            try:
                topic, payload = await asyncio.wait_for(sub.recv(), 0.05)
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("no event received")
        assert topic == "peer.connected"
        assert payload["peer"] == PEER
        assert payload["node"] == server.node_id
        assert payload["ts"] >= before
    finally:
        sub.close()


# -- sync client against a server thread ---------------------------------------------------


@pytest.fixture
def threaded() -> Iterator[ThreadedControlServer]:
    api = FakeNode(slow_s=1.0)
    with ThreadedControlServer(api, node_id=api.node_id) as srv:
        yield srv


def test_sync_client_roundtrip_and_remote_error(threaded: ThreadedControlServer) -> None:
    with ControlClient(threaded.control_endpoint) as client:
        assert client.call("store", key="a", value=b"1")["key"] == "a"
        assert client.call("get", key="a")["value"] == b"1"
        with pytest.raises(RemoteError) as err:
            client.call("get", key="missing")
        assert err.value.code == "not_found"
        assert err.value.message == "key not found: missing"
        assert client.call("id", node=2)["id"] == FakeNode().node_id  # node field ignored


def test_sync_client_unreachable_is_fast() -> None:
    with ControlClient(f"tcp://127.0.0.1:{free_port()}", timeout_s=5) as client:
        started = time.monotonic()
        with pytest.raises(Unreachable):
            client.call("id")
        assert time.monotonic() - started < 2.0


def test_sync_client_timeout_then_next_call_works() -> None:
    """A server that reads but never answers, then starts answering: the socket is recreated."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    answering = threading.Event()
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            if not router.poll(50):
                continue
            frames = router.recv_multipart()
            if answering.is_set():
                request = unpack(frames[-1])
                reply = {"v": 1, "id": request["id"], "ok": True, "result": {"pong": True}}
                router.send_multipart([*frames[:-1], pack(reply)])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with ControlClient(f"tcp://127.0.0.1:{port}", timeout_s=0.3) as client:
            started = time.monotonic()
            with pytest.raises(Timeout):
                client.call("id")
            assert 0.25 <= time.monotonic() - started < 1.5
            answering.set()
            assert client.call("id") == {"pong": True}
            assert client.call("id") == {"pong": True}
    finally:
        done.set()
        thread.join(timeout=5)
        router.close(linger=0)


def test_sync_event_subscriber(threaded: ThreadedControlServer) -> None:
    with EventSubscriber(threaded.events_endpoint, ["record."]) as sub:
        for _ in range(200):
            threaded.publish("record.stored", {"key_id": "ab", "size": 3})
            event = sub.recv(timeout_s=0.05)
            if event is not None:
                break
        else:
            pytest.fail("no event received")
        assert event[0] == "record.stored"
        assert event[1]["size"] == 3
        assert event[1]["node"] == FakeNode().node_id


# -- hypothesis: anything msgpack-able gets exactly one map reply ----------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
objects = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {
        "v": st.just(1) | objects,
        "cmd": st.sampled_from([*COMMANDS, "nope"]) | objects,
        "args": st.dictionaries(
            st.sampled_from(["key", "value", "node_id", "topic", "port", "meta", "x"]),
            objects | st.just(PEER),
            max_size=4,
        )
        | objects,
    },
    optional={"id": objects, "node": objects},
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(obj=objects | envelopes)
def test_any_msgpack_object_gets_exactly_one_map_reply(
    threaded: ThreadedControlServer, obj: object
) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(threaded.control_endpoint)
    try:
        sock.send_multipart([b"", pack(obj)])
        assert sock.poll(int(REPLY_TIMEOUT_S * 1000))
        frames = sock.recv_multipart()
        reply = unpack(frames[1])
        assert isinstance(reply, dict)
        assert isinstance(reply["ok"], bool)
        if not reply["ok"]:
            assert isinstance(reply["error"]["code"], str)
        # the next reply on this socket belongs to the next request: no extra reply was sent
        sock.send_multipart([b"", req("rt", rid="probe")])
        assert sock.poll(int(REPLY_TIMEOUT_S * 1000))
        assert unpack(sock.recv_multipart()[1])["id"] == "probe"
    finally:
        sock.close(linger=0)
