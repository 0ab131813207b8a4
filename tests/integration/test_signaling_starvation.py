"""500 throwaway registrations at the signaling server do not keep an honest newcomer out.

Real websockets: four honest nodes (the process's runtime over the in-memory transport, whose
offers and answers go through the server) form a network; then 500 fakes register, each with
its own key, and never answer an offer. A fifth node joins: it must have a link within 5 s.
Before the ranking (issue 13) all 16 candidates the server handed out were fakes.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from node.identity import DOMAIN_SIGNALING, Identity
from node.runtime import NodeSettings
from node.transport.memory import MemoryHub, MemoryTransport
from peer.node import PeerNode
from signaling.admission import AdmissionSettings
from signaling.messages import Register, encode
from signaling.server import SignalingServer

FAKES = 500
HONEST = 4
JOIN_LIMIT_S = 5.0


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    # Rate limits high enough that every fake gets in: the attacker with many addresses.
    admission = AdmissionSettings(register_burst_per_addr=2000, register_burst_global=2000)
    srv = SignalingServer("127.0.0.1", 0, admission=admission)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def fake(url: str, identity: Identity) -> ClientConnection:
    ws = await connect(url)
    challenge = json.loads(await ws.recv())
    nonce = bytes.fromhex(challenge["nonce"])
    sig = identity.sign(DOMAIN_SIGNALING + nonce)
    await ws.send(encode(Register(identity.node_id, identity.public_key, sig)))
    reply = json.loads(await ws.recv())
    assert reply["type"] == "registered", reply
    return ws


def node(url: str, hub: MemoryHub, rng: random.Random) -> PeerNode:
    return PeerNode(
        Identity.generate(rng),
        MemoryTransport(hub),
        settings=NodeSettings(dial_timeout_s=5.0),
        signaling_url=url,
    )


async def test_a_newcomer_joins_within_5_s_despite_500_fakes(server: SignalingServer) -> None:
    rng = random.Random(13)
    hub = MemoryHub()
    honest = [node(server.url, hub, rng) for _ in range(HONEST)]
    fakes: list[ClientConnection] = []
    newcomer = node(server.url, hub, rng)
    try:
        for n in honest:
            await n.start()
            async with asyncio.timeout(20):
                while n is not honest[0] and not n.runtime.connections:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        for _ in range(0, FAKES, 50):
            ids = [Identity.generate(rng) for _i in range(50)]
            fakes += await asyncio.gather(*(fake(server.url, ident) for ident in ids))
        assert server.stats().registered == FAKES + HONEST

        started = time.monotonic()
        await newcomer.start()
        async with asyncio.timeout(JOIN_LIMIT_S):
            while not newcomer.runtime.connections:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        joined_s = time.monotonic() - started
        print(f"newcomer joined in {joined_s:.2f} s past {FAKES} fakes")
        assert joined_s < JOIN_LIMIT_S
        linked = {p.id for p in newcomer.runtime.peers()}
        assert linked & {n.runtime.node_id for n in honest}
    finally:
        for ws in fakes:
            await ws.close()
        for n in [newcomer, *honest]:
            await n.stop()
