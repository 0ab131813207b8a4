"""A rogue peer against owned, immutable and open records (issue 13).

The rogue is a real node (``PeerNode``: its own Ed25519 key, the real HELLO handshake, valid
signatures) on the in-memory transport; it plays foul only by what it chooses to sign and send
(``runtime.write_record`` sends a record as it is). The honest nodes decide, as holders and as
readers, what is valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from control.errors import CommandError, ErrorCode
from node.ids import key_id
from node.records import Record, RecordKind, immutable_address, sign_mutable, sign_record
from peer.node import PeerNode
from signaling.server import SignalingServer
from tests.integration.test_runtime_memory import start_nodes, stop_nodes, wait_until

HONEST = 5


@pytest.fixture
async def net() -> AsyncIterator[tuple[list[PeerNode], PeerNode]]:
    server = SignalingServer("127.0.0.1", 0)
    await server.start()
    nodes = await start_nodes(f"ws://127.0.0.1:{server.port}", HONEST + 1)
    try:
        await wait_until(lambda: all(len(n.runtime.core.table) >= HONEST for n in nodes))
        yield nodes[:HONEST], nodes[HONEST]
    finally:
        await stop_nodes(nodes)
        await server.close()


async def values_everywhere(nodes: list[PeerNode], address: str) -> set[bytes]:
    return {(await n.api.get_address(address=address))["value"] for n in nodes}


async def test_rogue_cannot_write_roll_back_or_race_an_owned_record(
    net: tuple[list[PeerNode], PeerNode],
) -> None:
    honest, rogue = net
    owner = honest[0]
    first = await owner.api.put_mutable(name=b"profile", value=b"v1", seq=None, cas=None)
    address = first["address"]
    assert (first["seq"], first["kind"]) == (1, "mutable")
    v1 = owner.runtime.core.records.get(bytes.fromhex(address), owner.runtime.now)
    assert v1 is not None
    second = await owner.api.put_mutable(name=b"profile", value=b"v2", seq=None, cas=1)
    assert (second["seq"], second["address"]) == (2, address)

    # 1. The rogue signs with its own key for the owner's address: every holder refuses.
    wall = rogue.runtime.core.wall_ms(rogue.runtime.now)
    mine = sign_mutable(rogue.identity, b"profile", 99, wall, b"evil")
    forged = Record(
        v1.key, b"evil", wall, mine.public_key, mine.sig, RecordKind.MUTABLE, 99, b"profile"
    )
    r = await rogue.runtime.write_record(forged)
    assert (r.acks, set(r.reasons)) == (0, {"not_owner"}), r
    # ... nor can it squat the address with an open record.
    r = await rogue.runtime.write_record(sign_record(rogue.identity, v1.key, b"evil", wall))
    assert (r.acks, set(r.reasons)) == (0, {"owned"}), r

    # 2. Rolling back: the owner's own, validly signed seq 1 replayed.
    r = await rogue.runtime.write_record(v1)
    assert (r.acks, set(r.reasons)) == (0, {"seq_not_newer"}), r
    assert await values_everywhere(honest, address) == {b"v2"}

    # 3. A CAS race: two writers expect seq 2; exactly one wins, the other gets `conflict`.
    results = await asyncio.gather(
        owner.api.put_mutable(name=b"profile", value=b"A", seq=None, cas=2),
        owner.api.put_mutable(name=b"profile", value=b"B", seq=None, cas=2),
        return_exceptions=True,
    )
    won = [x for x in results if isinstance(x, dict)]
    lost = [x for x in results if isinstance(x, CommandError)]
    assert (len(won), len(lost)) == (1, 1), results
    assert lost[0].code == ErrorCode.CONFLICT
    assert set(lost[0].details["reasons"]) <= {"cas_mismatch", "seq_not_newer"}  # type: ignore[index]
    winner = b"A" if won[0] is results[0] else b"B"
    assert await values_everywhere(honest, address) == {winner}
    # A stale CAS after the race is refused the same way.
    with pytest.raises(CommandError) as stale:
        await owner.api.put_mutable(name=b"profile", value=b"late", seq=None, cas=2)
    assert stale.value.code == ErrorCode.CONFLICT
    assert await values_everywhere(honest, address) == {winner}


async def test_a_forged_immutable_value_is_refused_by_holders_and_readers(
    net: tuple[list[PeerNode], PeerNode],
) -> None:
    honest, rogue = net
    put = await honest[1].api.put_immutable(value=b"the real thing")
    address = put["address"]
    assert address == immutable_address(b"the real thing").hex()
    forged = Record(bytes.fromhex(address), b"forged", 0, b"", b"", RecordKind.IMMUTABLE)
    r = await rogue.runtime.write_record(forged)
    assert (r.acks, set(r.reasons)) == (0, {"hash_mismatch"}), r
    # The rogue serves the forgery from its own store: readers verify and ignore it.
    core = rogue.runtime.core
    core.records._entries.clear()  # (the rogue's own store: it may hold anything)
    core.records.put(forged, rogue.runtime.now)
    for node in honest:
        got = await node.api.get_address(address=address)
        assert (got["value"], got["kind"]) == (b"the real thing", "immutable")


async def test_a_far_future_open_record_does_not_lock_the_publisher_out(
    net: tuple[list[PeerNode], PeerNode],
) -> None:
    honest, rogue = net
    publisher = honest[2]
    await publisher.api.store(key="shared", value=b"honest-1")
    # The rogue writes the key with a ts 4 minutes ahead (inside the 5-minute skew limit).
    ahead_ms = rogue.runtime.core.wall_ms(rogue.runtime.now) + 4 * 60 * 1000
    ahead = sign_record(rogue.identity, key_id("shared"), b"rogue", ahead_ms)
    r = await rogue.runtime.write_record(ahead)
    assert r.ok  # the open namespace: anyone may write, the last write wins
    assert {(await n.api.get(key="shared"))["value"] for n in honest} == {b"rogue"}
    # A rogue picks its targets: say it skipped the publisher, whose own copy is still its own
    # (so the publisher cannot learn the far-future ts from its own store).
    core = publisher.runtime.core
    assert core.records.discard(ahead)
    # The publisher writes again at once: accepted everywhere, and it is what everyone reads.
    again = await publisher.api.store(key="shared", value=b"honest-2")
    assert again["acks"] >= again["quorum"], again  # (the remaining acks land after the quorum)
    got = [await n.api.get(key="shared") for n in honest]
    assert {g["value"] for g in got} == {b"honest-2"}
    assert all(g["ts"] > ahead_ms for g in got)
    # A beyond-the-limit ts is refused outright.
    far_ms = ahead_ms + 10 * 60 * 1000
    r = await rogue.runtime.write_record(
        sign_record(rogue.identity, key_id("shared"), b"rogue", far_ms)
    )
    assert (r.acks, set(r.reasons)) == (0, {"timestamp too far in the future"}), r
