"""The aioice check adaptations (node.transport.ice_checks) on aioice's own objects, no sockets:
the highest-priority nominated pair stays selected, relayed checks wait while a direct pair is
alive, and an incoming check retransmits the in-progress request to its sender at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aioice.candidate import Candidate, candidate_priority
from aioice.ice import CandidatePair, Connection

from node.transport import ice_checks

ice_checks.install()


def candidate(kind: str, host: str, port: int = 5000) -> Candidate:
    return Candidate("f" + kind, 1, "udp", candidate_priority(1, kind), host, port, kind)


class FakeProtocol:
    """What the patched methods use of aioice's StunProtocol."""

    def __init__(self, local: Candidate) -> None:
        self.local_candidate = local
        self.transactions: dict[bytes, Any] = {}
        self.sent: list[tuple[Any, tuple[str, int]]] = []

    def send_stun(self, message: Any, addr: tuple[str, int]) -> None:
        self.sent.append((message, addr))


def pair(local: Candidate, remote: Candidate, state: CandidatePair.State) -> CandidatePair:
    p = CandidatePair(FakeProtocol(local), remote)  # type: ignore[arg-type]
    p.state = state
    return p


HOST = candidate("host", "198.51.100.6")
RELAY = candidate("relay", "203.0.113.1", 50000)
PEER_SRFLX = candidate("srflx", "203.0.113.12", 6000)
PEER_RELAY = candidate("relay", "203.0.113.1", 50001)


@pytest.mark.parametrize(
    "direct_first",
    [
        pytest.param(True, id="a later lower-priority nomination does not replace the pair"),
        pytest.param(False, id="a higher-priority nomination does replace it"),
    ],
)
async def test_the_highest_priority_nominated_pair_is_selected(direct_first: bool) -> None:
    conn = Connection(ice_controlling=True)
    direct = pair(HOST, PEER_SRFLX, CandidatePair.State.SUCCEEDED)
    relayed = pair(RELAY, PEER_RELAY, CandidatePair.State.SUCCEEDED)
    conn._check_list = [direct, relayed]
    direct.nominated = relayed.nominated = True
    # Whichever finishes last (aioice kept the last one), the direct pair ends up selected.
    for p in (direct, relayed) if direct_first else (relayed, direct):
        conn.check_complete(p)
    assert conn._nominated[1] is direct
    await conn.close()


def recording(
    direct_state: CandidatePair.State,
) -> tuple[Connection, CandidatePair, CandidatePair, list[CandidatePair]]:
    """A controlling connection with a direct pair in ``direct_state`` and a waiting relayed
    pair, whose check starts are recorded instead of sent."""
    conn = Connection(ice_controlling=True)
    direct = pair(HOST, PEER_SRFLX, direct_state)
    relayed = pair(RELAY, PEER_RELAY, CandidatePair.State.WAITING)
    conn._check_list = [direct, relayed]
    started: list[CandidatePair] = []

    async def check_start(p: CandidatePair) -> None:
        started.append(p)

    conn.check_start = check_start  # type: ignore[method-assign]
    return conn, direct, relayed, started


async def test_relayed_checks_wait_while_a_direct_pair_is_alive() -> None:
    conn, direct, relayed, started = recording(CandidatePair.State.WAITING)
    conn.check_start_task(direct)
    conn.check_start_task(relayed)
    assert relayed.state is CandidatePair.State.IN_PROGRESS  # the pacing loop moves on
    await asyncio.sleep(0.05)
    assert started == [direct]
    await asyncio.sleep(ice_checks.RELAY_GRACE_S)
    assert started == [direct, relayed]
    await conn.close()


async def test_relayed_checks_start_at_once_when_every_direct_pair_failed() -> None:
    conn, _, relayed, started = recording(CandidatePair.State.FAILED)
    conn.check_start_task(relayed)
    await asyncio.sleep(0.05)
    assert started == [relayed]
    await conn.close()


async def test_an_incoming_check_retransmits_the_request_in_flight_to_its_sender() -> None:
    conn = Connection(ice_controlling=False)
    conn.remote_username, conn.remote_password = "rfrag", "r" * 22
    protocol = FakeProtocol(HOST)
    request = SimpleNamespace(name="binding request")
    in_flight = SimpleNamespace(
        _Transaction__addr=("203.0.113.12", 6000), _Transaction__request=request
    )
    elsewhere = SimpleNamespace(_Transaction__addr=("203.0.113.1", 3478), _Transaction__request=1)
    protocol.transactions = {b"a": in_flight, b"b": elsewhere}
    conn._remote_candidates = [PEER_SRFLX]
    direct = pair(HOST, PEER_SRFLX, CandidatePair.State.IN_PROGRESS)
    direct.protocol = protocol  # type: ignore[assignment]
    direct.task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    conn._check_list = [direct]
    message = SimpleNamespace(attributes={"PRIORITY": 1})
    conn.check_incoming(message, ("203.0.113.12", 6000), protocol)  # type: ignore[arg-type]
    assert protocol.sent == [(request, ("203.0.113.12", 6000))]
    direct.task.cancel()  # type: ignore[union-attr]
    await conn.close()
