"""SignalingClient against the real signaling server (and a deliberately weird fake one)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from websockets.asyncio.server import ServerConnection, serve

from node.identity import Identity
from node.ids import NodeId, distance
from signaling.client import SignalingClient
from signaling.errors import SignalingRemoteError, SignalingTimeout, SignalingUnavailable
from signaling.server import SignalingServer

pytestmark = pytest.mark.timeout(30)

WAIT_S = 5.0


@pytest.fixture
def server(signaling_server: SignalingServer) -> SignalingServer:
    return signaling_server


@dataclass
class Recorder:
    """Collects a client's callbacks into queues that tests await."""

    offers: asyncio.Queue[tuple[NodeId, str, str]] = field(default_factory=asyncio.Queue)
    answers: asyncio.Queue[tuple[NodeId, str, str]] = field(default_factory=asyncio.Queue)
    errors: asyncio.Queue[tuple[str, str, str | None]] = field(default_factory=asyncio.Queue)
    registered: asyncio.Queue[int] = field(default_factory=asyncio.Queue)

    def on_offer(self, sender: NodeId, cid: str, sdp: str) -> None:
        self.offers.put_nowait((sender, cid, sdp))

    async def on_answer(self, sender: NodeId, cid: str, sdp: str) -> None:  # async on purpose
        await asyncio.sleep(0)
        self.answers.put_nowait((sender, cid, sdp))

    def on_error(self, code: str, message: str, cid: str | None) -> None:
        self.errors.put_nowait((code, message, cid))


T = TypeVar("T")


async def get(queue: asyncio.Queue[T]) -> T:
    async with asyncio.timeout(WAIT_S):
        return await queue.get()


ClientFactory = Callable[[str, Identity], tuple[SignalingClient, Recorder]]


@pytest.fixture
async def make_client() -> AsyncIterator[
    Callable[[str, Identity], tuple[SignalingClient, Recorder]]
]:
    clients: list[SignalingClient] = []

    def factory(url: str, identity: Identity) -> tuple[SignalingClient, Recorder]:
        rec = Recorder()
        client = SignalingClient(
            url,
            identity,
            rec.on_offer,
            rec.on_answer,
            on_error=rec.on_error,
            on_registered=lambda: rec.registered.put_nowait(client.registrations),
            rng=random.Random(0),
        )
        clients.append(client)
        return client, rec

    yield factory
    for client in clients:
        await client.close()


def ident(i: int) -> Identity:
    return Identity.generate(random.Random(i))


async def test_register_and_peers(server: SignalingServer, make_client: ClientFactory) -> None:
    identities = [ident(i) for i in range(1, 6)]
    clients = []
    for identity in identities:
        client, rec = make_client(server.url, identity)
        await client.start(timeout_s=WAIT_S)
        assert client.connected
        assert await get(rec.registered) == 1
        clients.append(client)
    me = identities[0].node_id
    expected = sorted((i.node_id for i in identities[1:]), key=lambda other: distance(me, other))
    assert await clients[0].peers(10) == expected
    assert await clients[0].peers(2) == expected[:2]
    assert await clients[0].peers(0) == expected[:1]  # clamped to 1
    assert server.stats().registered == 5


async def test_offer_answer_relay(server: SignalingServer, make_client: ClientFactory) -> None:
    alice, alice_rec = make_client(server.url, ident(1))
    bob, bob_rec = make_client(server.url, ident(2))
    await alice.start(timeout_s=WAIT_S)
    await bob.start(timeout_s=WAIT_S)
    await alice.send_offer(bob.node_id, "cid-1", "offer-sdp")
    assert await get(bob_rec.offers) == (alice.node_id, "cid-1", "offer-sdp")
    await bob.send_answer(alice.node_id, "cid-1", "answer-sdp")
    assert await get(alice_rec.answers) == (bob.node_id, "cid-1", "answer-sdp")
    assert alice_rec.errors.empty()
    assert bob_rec.errors.empty()


async def test_unknown_target_surfaces(server: SignalingServer, make_client: ClientFactory) -> None:
    alice, rec = make_client(server.url, ident(1))
    await alice.start(timeout_s=WAIT_S)
    await alice.send_offer(ident(404).node_id, "lost-1", "sdp")
    code, message, cid = await get(rec.errors)
    assert (code, cid) == ("unknown_target", "lost-1")
    assert ident(404).node_id.hex() in message


async def test_reconnects_after_server_restart(make_client: ClientFactory) -> None:
    first = SignalingServer("127.0.0.1", 0)
    await first.start()
    port = first.port
    alice, alice_rec = make_client(first.url, ident(1))
    bob, bob_rec = make_client(first.url, ident(2))
    await alice.start(timeout_s=WAIT_S)
    await bob.start(timeout_s=WAIT_S)
    assert await get(alice_rec.registered) == 1
    assert await get(bob_rec.registered) == 1
    await first.close()
    with pytest.raises(SignalingUnavailable):  # the loss is noticed: calls fail fast
        await alice.peers(1)
    assert not alice.connected
    second = SignalingServer("127.0.0.1", port)
    await second.start()
    try:
        assert await get(alice_rec.registered) == 2  # re-registered by itself
        assert await get(bob_rec.registered) == 2
        await alice.wait_registered(WAIT_S)
        assert alice.connected
        assert sorted(second.router.registered_ids()) == sorted([alice.node_id, bob.node_id])
        assert await alice.peers(5) == [bob.node_id]
    finally:
        await second.close()


async def test_not_connected_raises(server: SignalingServer, make_client: ClientFactory) -> None:
    dead_url = server.url
    await server.close()
    alice, _ = make_client(dead_url, ident(1))
    await alice.start()
    assert not alice.connected
    with pytest.raises(SignalingUnavailable):
        await alice.send_offer(ident(2).node_id, "c", "sdp")
    with pytest.raises(SignalingUnavailable):
        await alice.send_answer(ident(2).node_id, "c", "sdp")
    with pytest.raises(SignalingUnavailable):
        await alice.peers()
    with pytest.raises(SignalingTimeout):
        await alice.wait_registered(0.3)
    await alice.close()
    with pytest.raises(SignalingUnavailable):
        await alice.wait_registered(0.1)


def test_bad_url_rejected() -> None:
    with pytest.raises(ValueError, match="WebSocket URL"):
        SignalingClient("http://nope", ident(1), lambda *a: None, lambda *a: None)


async def test_invalid_relay_arguments(server: SignalingServer, make_client: ClientFactory) -> None:
    alice, _ = make_client(server.url, ident(1))
    await alice.start(timeout_s=WAIT_S)
    with pytest.raises(ValueError, match="cid"):
        await alice.send_offer(ident(2).node_id, "c" * 65, "sdp")
    with pytest.raises(ValueError, match="32-byte"):
        await alice.send_offer(NodeId(b"short"), "c", "sdp")


async def test_same_key_twice_newer_connection_wins(
    server: SignalingServer, make_client: ClientFactory
) -> None:
    identity = ident(1)
    old, old_rec = make_client(server.url, identity)
    await old.start(timeout_s=WAIT_S)
    new, _ = make_client(server.url, identity)
    await new.start(timeout_s=WAIT_S)
    code, _, cid = await get(old_rec.errors)
    assert (code, cid) == ("already_registered", None)
    assert new.connected
    await old.close()  # before its capped backoff would take the id back


# -- a fake server that misbehaves -----------------------------------------------------------


async def test_weird_server_frames_ignored(make_client: ClientFactory) -> None:
    alice_id = ident(1)
    sender = ident(2).node_id.hex()
    got_peers_request = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.send(b"\x00binary")
        await ws.send(json.dumps({"type": "challenge", "nonce": "00" * 32}))
        json.loads(await ws.recv())  # the register frame
        for junk in [
            "not json",
            "[]",
            '{"type": "surprise"}',
            '{"type": "offer", "to": "00", "cid": "c", "sdp": "s"}',
            '{"type": "offer", "cid": "c", "sdp": "s"}',
            '{"type": "peers", "rid": 1, "peers": ["zz"]}',
            '{"type": "registered", "id": "' + "11" * 32 + '"}',  # not us
            '{"type": "error"}',
        ]:
            await ws.send(junk)
        await ws.send(json.dumps({"type": "registered", "id": alice_id.node_id.hex()}))
        await ws.send(
            json.dumps(
                {
                    "type": "offer",
                    "to": alice_id.node_id.hex(),
                    "cid": "ok",
                    "sdp": "S",
                    "from": sender,
                }
            )
        )
        # Never answer peers requests: the client must time out cleanly.
        async for _ in ws:
            got_peers_request.set()

    async with serve(handler, "127.0.0.1", 0) as fake:
        port = next(iter(fake.sockets)).getsockname()[1]
        alice, rec = make_client(f"ws://127.0.0.1:{port}", alice_id)
        await alice.start(timeout_s=WAIT_S)
        assert await get(rec.offers) == (NodeId(bytes.fromhex(sender)), "ok", "S")
        with pytest.raises(SignalingTimeout):
            await alice.peers(3, timeout_s=0.3)
        assert got_peers_request.is_set()
        assert alice.connected
        assert alice.registrations == 1
        await alice.close()


async def test_error_reply_fails_peers_request(make_client: ClientFactory) -> None:
    alice_id = ident(1)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "challenge", "nonce": "00" * 32}))
        await ws.recv()
        await ws.send(json.dumps({"type": "registered", "id": alice_id.node_id.hex()}))
        async for data in ws:
            rid = json.loads(data)["rid"]
            await ws.send(
                json.dumps(
                    {"type": "error", "code": "rate_limited", "message": "slow down", "rid": rid}
                )
            )

    async with serve(handler, "127.0.0.1", 0) as fake:
        port = next(iter(fake.sockets)).getsockname()[1]
        alice, _ = make_client(f"ws://127.0.0.1:{port}", alice_id)
        await alice.start(timeout_s=WAIT_S)
        with pytest.raises(SignalingRemoteError) as info:
            await alice.peers(3)
        assert info.value.code == "rate_limited"
        await alice.close()


def test_backoff_doubles_to_cap_with_jitter() -> None:
    client = SignalingClient(
        "ws://127.0.0.1:1", ident(1), lambda *a: None, lambda *a: None, rng=random.Random(3)
    )
    for attempt, base in enumerate([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]):
        delays = [client._next_delay(attempt) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays), attempt
        assert max(delays) - min(delays) > base / 4  # jittered, not constant
    assert client._next_delay(10_000) <= 5.0
