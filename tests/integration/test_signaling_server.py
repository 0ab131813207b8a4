"""The real signaling server on 127.0.0.1 (port 0), fed garbage by raw WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from node.identity import DOMAIN_SIGNALING, Identity
from signaling.server import HARD_MAX_FRAME_BYTES, SignalingServer

pytestmark = pytest.mark.timeout(30)

RECV_TIMEOUT_S = 5.0


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    srv = SignalingServer("127.0.0.1", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(RECV_TIMEOUT_S):
        data = await ws.recv()
    frame = json.loads(data)
    assert isinstance(frame, dict)
    return frame


async def open_raw(server: SignalingServer) -> tuple[ClientConnection, str]:
    ws = await connect(server.url, max_size=4 * 1024 * 1024)
    challenge = await recv_json(ws)
    assert challenge["type"] == "challenge"
    return ws, challenge["nonce"]


async def open_registered(server: SignalingServer, identity: Identity) -> ClientConnection:
    ws, nonce = await open_raw(server)
    await ws.send(
        json.dumps(
            {
                "type": "register",
                "id": identity.node_id.hex(),
                "public_key": identity.public_key.hex(),
                "sig": identity.sign(DOMAIN_SIGNALING + bytes.fromhex(nonce)).hex(),
            }
        )
    )
    assert await recv_json(ws) == {"type": "registered", "id": identity.node_id.hex()}
    return ws


async def assert_well_behaved_clients_work(server: SignalingServer) -> None:
    alice = Identity.generate(random.Random(101))
    bob = Identity.generate(random.Random(102))
    a = await open_registered(server, alice)
    b = await open_registered(server, bob)
    try:
        await a.send(json.dumps({"type": "peers", "n": 5, "rid": "q"}))
        reply = await recv_json(a)
        assert reply["type"] == "peers"
        assert reply["rid"] == "q"
        assert bob.node_id.hex() in reply["peers"]
        assert alice.node_id.hex() not in reply["peers"]
        offer = {"type": "offer", "to": bob.node_id.hex(), "cid": "k1", "sdp": "SDP-O"}
        await a.send(json.dumps(offer))
        assert await recv_json(b) == {**offer, "from": alice.node_id.hex()}
        answer = {"type": "answer", "to": alice.node_id.hex(), "cid": "k1", "sdp": "SDP-A"}
        await b.send(json.dumps(answer))
        assert await recv_json(a) == {**answer, "from": bob.node_id.hex()}
    finally:
        await a.close()
        await b.close()


async def test_port_zero_binds_real_port(server: SignalingServer) -> None:
    assert server.port > 0
    assert server.url == f"ws://127.0.0.1:{server.port}"


async def test_well_behaved_clients(server: SignalingServer) -> None:
    await assert_well_behaved_clients_work(server)


GARBAGE: list[tuple[str | bytes, str]] = [
    ("this is not json", "bad_json"),
    ('{"type": "peers", "n": 3', "bad_json"),  # truncated JSON
    (b"\x00\x01binary\xff", "bad_json"),
    ("[1, 2, 3]", "bad_request"),
    ('{"type": 12}', "bad_request"),
    ('{"type": "peers", "n": "many"}', "bad_request"),
    ('{"type": "gimme"}', "unknown_type"),
    ('{"type": "registered", "id": "00"}', "unknown_type"),
    ("x" * (200 * 1024), "too_large"),
    ('{"type": "peers", "rid": 1}', "not_registered"),
]


async def test_garbage_answered_then_server_still_serves(server: SignalingServer) -> None:
    # Attackers and well-behaved clients share the server at the same time.
    bystander = Identity.generate(random.Random(7))
    watcher = await open_registered(server, bystander)
    ws, _ = await open_raw(server)
    try:
        for data, code in GARBAGE:
            await ws.send(data)
            frame = await recv_json(ws)
            assert (frame["type"], frame["code"]) == ("error", code), data[:40]
        await assert_well_behaved_clients_work(server)
    finally:
        await ws.close()
        await watcher.close()
    errors = server.stats().errors
    assert errors["bad_json"] == 3
    assert errors["too_large"] == 1


async def test_spoofed_from_and_unknown_target(server: SignalingServer) -> None:
    alice = Identity.generate(random.Random(1))
    bob = Identity.generate(random.Random(2))
    a = await open_registered(server, alice)
    b = await open_registered(server, bob)
    try:
        spoof = {
            "type": "offer",
            "to": bob.node_id.hex(),
            "cid": "s",
            "sdp": "x",
            "from": "00" * 32,
        }
        await a.send(json.dumps(spoof))
        frame = await recv_json(a)
        assert (frame["code"], frame["cid"]) == ("spoofed_from", "s")
        ghost = Identity.generate(random.Random(3)).node_id.hex()
        await a.send(json.dumps({"type": "offer", "to": ghost, "cid": "g", "sdp": "x"}))
        frame = await recv_json(a)
        assert (frame["code"], frame["cid"]) == ("unknown_target", "g")
        # bob got nothing from the failed relays: his next frame is the reply to his own request.
        await b.send(json.dumps({"type": "peers", "rid": 1}))
        assert (await recv_json(b))["peers"] == [alice.node_id.hex()]
    finally:
        await a.close()
        await b.close()


async def test_frame_over_hard_limit_closes_1009(server: SignalingServer) -> None:
    ws, _ = await open_raw(server)
    await ws.send("x" * (HARD_MAX_FRAME_BYTES + 1))
    with pytest.raises(ConnectionClosed) as info:
        await recv_json(ws)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    await assert_well_behaved_clients_work(server)


async def test_flood_is_rate_limited_others_unaffected(server: SignalingServer) -> None:
    ident = Identity.generate(random.Random(55))
    ws = await open_registered(server, ident)
    try:
        for _ in range(150):
            await ws.send('{"type": "peers", "rid": 0}')
        kinds = [(await recv_json(ws)).get("code", "ok") for _ in range(150)]
        assert kinds.count("rate_limited") >= 40  # 150 frames arrive well within a second
        await assert_well_behaved_clients_work(server)
    finally:
        await ws.close()


async def test_reconnect_with_key_replaces_old_connection(server: SignalingServer) -> None:
    alice = Identity.generate(random.Random(9))
    old = await open_registered(server, alice)
    new = await open_registered(server, alice)
    try:
        frame = await recv_json(old)
        assert (frame["type"], frame["code"]) == ("error", "already_registered")
        with pytest.raises(ConnectionClosed):
            await recv_json(old)
        bob = Identity.generate(random.Random(10))
        b = await open_registered(server, bob)
        await b.send(
            json.dumps({"type": "offer", "to": alice.node_id.hex(), "cid": "c", "sdp": "s"})
        )
        assert (await recv_json(new))["from"] == bob.node_id.hex()
        await b.close()
    finally:
        await new.close()
        await old.close()


async def test_client_disconnect_unregisters(server: SignalingServer) -> None:
    alice = Identity.generate(random.Random(1))
    bob = Identity.generate(random.Random(2))
    a = await open_registered(server, alice)
    b = await open_registered(server, bob)
    await b.close()
    try:
        await server.wait_connection_count(1, RECV_TIMEOUT_S)
        assert server.router.registered_ids() == [alice.node_id]
        await a.send(json.dumps({"type": "peers", "rid": 2}))
        assert (await recv_json(a))["peers"] == []
    finally:
        await a.close()
