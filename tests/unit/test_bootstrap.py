"""The bootstrap loop backs off (with jitter) after rounds whose dials all failed."""

from __future__ import annotations

import random
from typing import Any

from node.bootstrap import RETRY_AFTER_FAILED_DIALS_S, Bootstrapper
from node.ids import NodeId


class FakeSignaling:
    connected = True

    async def peers(self, n: int) -> list[NodeId]:
        return [NodeId(bytes([i]) * 32) for i in range(1, n + 1)]

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


async def test_failed_rounds_back_off_exponentially_with_jitter_and_reset_on_success() -> None:
    ok = False
    joined: list[bool] = []

    async def dial(peer: NodeId) -> bool:
        return ok

    b = Bootstrapper(
        FakeSignaling(),  # type: ignore[arg-type]
        dial=dial,
        alone=lambda: True,
        join=lambda: joined.append(True),
        peers_wanted=2,
        check_interval_s=5.0,
        max_backoff_s=60.0,
        rng=random.Random(1),
    )
    assert b.backoff_s() == 0.0
    bases = []
    for _ in range(6):
        assert not await b.round()
        bases.append(min(60.0, RETRY_AFTER_FAILED_DIALS_S * 2 ** (b.failures - 1)))
        pause = b.backoff_s()
        assert 0.5 * bases[-1] <= pause <= 1.5 * bases[-1]
    assert bases == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]  # soon at first (fresh candidates), then less
    assert len({b.backoff_s() for _ in range(5)}) > 1  # jittered: nodes do not retry in step
    ok = True
    assert await b.round()
    assert b.failures == 0
    assert b.backoff_s() == 0.0
    assert joined == [True]


async def test_island_checks_space_out_and_start_over_after_a_merge() -> None:
    now = [100.0]
    known = {NodeId(bytes([1]) * 32)}
    dialed: list[NodeId] = []
    joined: list[bool] = []

    async def dial(peer: NodeId) -> bool:
        dialed.append(peer)
        return True

    b = Bootstrapper(
        FakeSignaling(), dial=dial, alone=lambda: False, join=lambda: joined.append(True),  # type: ignore[arg-type]
        peers_wanted=1,  # the server hands 2 candidates: IDs 0x01… (known) and 0x02…
        covers=lambda peer: peer in known, heal_first_s=2.0, heal_max_s=16.0,
        clock=lambda: now[0], rng=random.Random(3),
    )  # fmt: skip
    assert await b.heal()  # 0x02… is registered, the table has room for it, unknown: join
    assert dialed == [NodeId(bytes([2]) * 32)]
    assert joined == [True]
    assert b.merges == 1
    known.add(NodeId(bytes([2]) * 32))
    gaps = []
    for _ in range(5):
        before = now[0]
        assert not await b.heal()  # everyone known: no dial, no join
        gaps.append(b.next_island_check - before)
    assert dialed == [NodeId(bytes([2]) * 32)]
    for gap, base in zip(gaps, [2.0, 4.0, 8.0, 16.0, 16.0], strict=True):
        assert 0.75 * base <= gap <= 1.25 * base  # doubling, capped, jittered
    known.discard(NodeId(bytes([2]) * 32))
    assert await b.heal()
    assert b.merges == 2
    assert b.next_island_check - now[0] == 2.0  # a merge starts the series again
