"""The real signaling server on 127.0.0.1 (port 0), fed garbage by raw WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from node.identity import DOMAIN_SIGNALING, Identity
from signaling.__main__ import parse_args
from signaling.server import HARD_MAX_FRAME_BYTES, SignalingServer
from tests.support.procs import reap

pytestmark = pytest.mark.timeout(30)

RECV_TIMEOUT_S = 5.0


@pytest.fixture
def server(signaling_server: SignalingServer) -> SignalingServer:
    return signaling_server


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(RECV_TIMEOUT_S):
        data = await ws.recv()
    frame = json.loads(data)
    assert isinstance(frame, dict)
    return frame


async def open_raw(
    server: SignalingServer, max_queue: int | None = 16
) -> tuple[ClientConnection, str]:
    ws = await connect(server.url, max_size=4 * 1024 * 1024, max_queue=max_queue)
    challenge = await recv_json(ws)
    assert challenge["type"] == "challenge"
    return ws, challenge["nonce"]


async def open_registered(
    server: SignalingServer, identity: Identity, max_queue: int | None = 16
) -> ClientConnection:
    ws, nonce = await open_raw(server, max_queue)
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


async def registered_pair(
    server: SignalingServer, seed_a: int, seed_b: int
) -> tuple[Identity, ClientConnection, Identity, ClientConnection]:
    """Two registered clients with identities from fixed seeds."""
    alice = Identity.generate(random.Random(seed_a))
    bob = Identity.generate(random.Random(seed_b))
    return alice, await open_registered(server, alice), bob, await open_registered(server, bob)


async def assert_well_behaved_clients_work(server: SignalingServer) -> None:
    alice, a, bob, b = await registered_pair(server, 101, 102)
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
    alice, a, bob, b = await registered_pair(server, 1, 2)
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
    alice, a, _bob, b = await registered_pair(server, 1, 2)
    await b.close()
    try:
        await server.wait_connection_count(1, RECV_TIMEOUT_S)
        assert server.router.registered_ids() == [alice.node_id]
        await a.send(json.dumps({"type": "peers", "rid": 2}))
        assert (await recv_json(a))["peers"] == []
    finally:
        await a.close()


# -- the `python -m signaling` entry point ----------------------------------------------------


def test_parse_args_precedence() -> None:
    args = parse_args([], env={})
    assert (args.host, args.port, args.log_level) == ("127.0.0.1", 3000, "INFO")
    args = parse_args([], env={"SIGNALLING_HOST": "0.0.0.0", "SIGNALLING_PORT": "4000"})
    assert (args.host, args.port) == ("0.0.0.0", 4000)
    env = {"SIGNALING_PORT": "5000", "SIGNALLING_PORT": "4000", "SIGNALING_LOG_LEVEL": "debug"}
    args = parse_args([], env=env)
    assert (args.port, args.log_level) == (5000, "DEBUG")
    args = parse_args(["--port", "6000", "--host", "::1"], env=env)
    assert (args.host, args.port) == ("::1", 6000)


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--port", "70000"], {}, "0..65535"),
        (["--port", "abc"], {}, "integer"),
        ([], {"SIGNALING_PORT": "-1"}, "SIGNALING_PORT"),
        ([], {"SIGNALLING_PORT": "x"}, "SIGNALLING_PORT"),
        (["--log-level", "loud"], {}, "log level"),
    ],
)
def test_bad_configuration_exits_2(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv, env=env)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


async def test_cli_serves_and_stops_on_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALING_", "SIGNALLING_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signaling",
        "--port",
        "0",
        "--log-level",
        "WARNING",
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(20):
            line = (await proc.stderr.readline()).decode()
        assert line.startswith("listening on ws://127.0.0.1:")
        port = int(line.strip().rsplit(":", 1)[1])
        ws = await connect(f"ws://127.0.0.1:{port}")
        assert (await recv_json(ws))["type"] == "challenge"
        await ws.close()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        await reap(proc)


async def test_cli_port_in_use_exits_1() -> None:
    async with SignalingServer("127.0.0.1", 0) as busy:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "signaling",
            "--port",
            str(busy.port),
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
        assert proc.returncode == 1
        assert b"cannot listen" in err


async def test_client_that_never_reads_is_closed_others_unaffected(
    server: SignalingServer,
) -> None:
    target_id = Identity.generate(random.Random(500))
    target = await open_registered(server, target_id, max_queue=1)
    senders = [
        # No client-side queue limit: they get unknown_target frames they do not read here.
        await open_registered(server, Identity.generate(random.Random(600 + i)), max_queue=None)
        for i in range(7)
    ]
    offer = json.dumps(
        {"type": "offer", "to": target_id.node_id.hex(), "cid": "big", "sdp": "s" * 60_000}
    )
    try:
        # ~40 MB towards a client that reads nothing: its outbound queue fills and it is dropped.
        for ws in senders:
            for _ in range(95):
                await ws.send(offer)
        await server.wait_connection_count(len(senders), 20)
        assert server.slow_consumers_closed == 1
        assert target_id.node_id not in server.router.registered_ids()
        # Senders got no error for the relays they sent before the target was dropped, and one
        # unknown_target for each relay after it; nothing else is pending and all still work.
        await assert_well_behaved_clients_work(server)
    finally:
        for ws in senders:
            await ws.close()
        # Its reading is paused (full queue), so it would not notice the server's abort and would
        # wait close_timeout for a closing handshake: drop it locally.
        target.transport.abort()


async def test_unregistered_connection_closed_after_timeout() -> None:
    async with SignalingServer("127.0.0.1", 0, register_timeout_s=0.2) as srv:
        alice = Identity.generate(random.Random(1))
        registered = await open_registered(srv, alice)
        idle, _ = await open_raw(srv)  # its deadline falls after alice's
        try:
            frame = await recv_json(idle)
            assert (frame["type"], frame["code"]) == ("error", "not_registered")
            with pytest.raises(ConnectionClosed) as info:
                await recv_json(idle)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1008
            # The registered connection outlived its own deadline and still works.
            await registered.send(json.dumps({"type": "peers", "rid": 1}))
            assert await recv_json(registered) == {"type": "peers", "rid": 1, "peers": []}
            assert srv.connection_count == 1
        finally:
            await idle.close()
            await registered.close()
