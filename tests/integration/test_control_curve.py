"""CURVE on the control plane: the cluster key opens it, nothing else gets a byte back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from control.client import AsyncControlClient, AsyncEventSubscriber, ControlClient
from control.codec import pack
from control.curve import CurveKeys, KeyFileError, check_exposure, is_loopback_endpoint
from control.errors import Unreachable
from control.server import ControlServer
from tests.support.fake_node import FakeNode

NO_REPLY_S = 1.0


@pytest.fixture(scope="module")
def keys() -> CurveKeys:
    return CurveKeys.generate()


@pytest.fixture
async def server(keys: CurveKeys) -> AsyncIterator[ControlServer]:
    api = FakeNode()
    srv = ControlServer(
        api, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", node_id=api.node_id, curve=keys
    )
    await srv.start()
    yield srv
    await srv.close()


async def assert_no_reply(sock: zmq.asyncio.Socket, endpoint: str) -> None:
    """An ``id`` request sent on ``sock`` to ``endpoint`` gets no reply (``sock`` is closed)."""
    try:
        sock.connect(endpoint)
        await sock.send_multipart([b"", pack({"v": 1, "id": 1, "cmd": "id", "args": {}})])
        assert await sock.poll(int(NO_REPLY_S * 1000)) == 0
    finally:
        sock.close(linger=0)


async def test_the_cluster_key_gets_replies_and_events(
    server: ControlServer, keys: CurveKeys
) -> None:
    async with AsyncControlClient(server.control_endpoint, 5.0, curve=keys) as client:
        assert (await client.call("id"))["id"] == server.node_id
    async with AsyncEventSubscriber(server.events_endpoint, ["hello"], curve=keys) as sub:
        received = None
        for _ in range(50):  # a PUB drops until the subscription arrives: publish until seen
            server.publish("hello", {"n": 1})
            try:
                received = await asyncio.wait_for(sub.recv(), 0.1)
                break
            except TimeoutError:
                continue
        assert received is not None
        assert received[0] == "hello"
        assert received[1]["n"] == 1


async def test_a_plain_client_gets_nothing_and_the_node_logs_it(
    server: ControlServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="control.curve")
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    await assert_no_reply(sock, server.control_endpoint)
    assert server.guard is not None
    assert server.guard.refused >= 1
    assert "does not speak CURVE" in caplog.text


async def test_another_key_is_refused_by_zap_and_logged(
    server: ControlServer, keys: CurveKeys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="control.curve")
    stranger = CurveKeys.generate()  # knows the server's public key, holds another pair
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, stranger.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, stranger.secret)
    await assert_no_reply(sock, server.control_endpoint)
    assert "not the cluster key" in caplog.text
    assert "127.0.0.1" in caplog.text


async def test_the_client_api_without_the_key_is_unreachable(server: ControlServer) -> None:
    def plain_call() -> None:
        with ControlClient(server.control_endpoint, timeout_s=NO_REPLY_S) as client:
            client.call("id")

    with pytest.raises(Unreachable):
        await asyncio.to_thread(plain_call)


def test_key_files_round_trip_and_are_private(tmp_path: Path) -> None:
    path = tmp_path / "c" / "curve.key"
    keys = CurveKeys.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert CurveKeys.load(path) == keys == CurveKeys.load_or_create(path)
    other = CurveKeys.generate()
    path.write_text(CurveKeys(keys.public, other.secret).to_json())
    with pytest.raises(KeyFileError, match="does not match"):
        CurveKeys.load(path)
    path.write_text("{}")
    with pytest.raises(KeyFileError):
        CurveKeys.load(path)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:7000", True),
        ("tcp://127.3.0.1:7000", True),
        ("tcp://localhost:7000", True),
        ("tcp://[::1]:7000", True),
        ("ipc:///tmp/x", True),
        ("tcp://0.0.0.0:7000", False),
        ("tcp://*:7000", False),
        ("tcp://198.51.100.1:7000", False),
        ("tcp://eth0:7000", False),
    ],
)
def test_loopback_endpoints(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback


def test_beyond_loopback_needs_a_key() -> None:
    check_exposure(["tcp://127.0.0.1:1"], None)
    check_exposure(["tcp://0.0.0.0:1"], CurveKeys.generate())
    with pytest.raises(ValueError, match="beyond loopback"):
        check_exposure(["tcp://127.0.0.1:1", "tcp://0.0.0.0:2"], None)
