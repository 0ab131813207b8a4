"""Bootstrap: whenever the node has no peers, ask the signaling server for some, dial, join.

The loop sleeps until woken (``wake()``: registered with the signaling server, or the last link
went down) or ``BOOTSTRAP_CHECK_S`` passes. Each round that finds the node alone asks the server
for ``2 × peers_wanted`` candidates, dials the first ``peers_wanted`` in parallel and, when at
least one dial succeeds, runs the core's join (a lookup of the own ID and bucket refreshes).
A round never ends the loop: a failed request or dial is retried. After a round whose dials
all failed the next round comes after an exponential backoff with jitter
(``RETRY_AFTER_FAILED_DIALS_S`` doubling up to ``BOOTSTRAP_MAX_BACKOFF_S``, times 0.5–1.5): soon,
because the server hands a node that asks again different untested candidates (a newcomer handed
fakes is not kept waiting), but backing off, because hundreds of nodes starting together on a
small machine otherwise livelock — every dial times out behind the others' dials, and all of
them retry in step, forever.

A node that is not alone still checks, now and then, that it is not on an island: nodes that
start together can bootstrap off each other only (the server hands out registrations close to
the requester) and form two networks that never hear of each other — no lookup crosses between
them. The check asks the server for candidates; one the routing table would hold but does not
know (``covers``) is a sign of another network: the node dials it and joins again through it,
which merges the two. The checks come ``HEAL_FIRST_S`` after a join, then at doubling intervals
up to ``HEAL_MAX_S`` (a settled node costs the server one small request every few minutes);
a merge starts the series again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from node.ids import NodeId
from node.signaling_port import SignalingPort

log = logging.getLogger(__name__)

BOOTSTRAP_CHECK_S = 5.0
RETRY_AFTER_FAILED_DIALS_S = 0.5
BOOTSTRAP_MAX_BACKOFF_S = 60.0
HEAL_FIRST_S = 2.0
HEAL_MAX_S = 300.0


class Bootstrapper:
    """The bootstrap loop of one node (see the module docstring)."""

    def __init__(
        self,
        signaling: SignalingPort,
        *,
        dial: Callable[[NodeId], Awaitable[bool]],
        alone: Callable[[], bool],
        join: Callable[[], None],
        peers_wanted: int,
        covers: Callable[[NodeId], bool] = lambda _peer: True,
        check_interval_s: float = BOOTSTRAP_CHECK_S,
        max_backoff_s: float = BOOTSTRAP_MAX_BACKOFF_S,
        heal_first_s: float = HEAL_FIRST_S,
        heal_max_s: float = HEAL_MAX_S,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.signaling = signaling
        self._dial = dial
        self._alone = alone
        self._join = join
        self.peers_wanted = peers_wanted
        self.check_interval_s = check_interval_s
        self.max_backoff_s = max_backoff_s
        self.failures = 0
        """Rounds in a row whose dials all failed (sets the backoff)."""
        self._rng = rng or random.Random()
        self.rounds = 0
        """Rounds that dialed candidates (diagnostics)."""
        self._wake = asyncio.Event()
        self._covers = covers
        self._clock = clock
        self.heal_first_s = heal_first_s
        self.heal_max_s = heal_max_s
        self._heal_gap = heal_first_s
        self._heal_at = clock() + heal_first_s
        self.merges = 0
        """Islands found and joined through (diagnostics)."""

    def wake(self) -> None:
        """Check now (the node may have lost its peers, or the server came back)."""
        self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled."""
        while True:
            if self.failures:
                await asyncio.sleep(self.backoff_s())
            else:
                pause = min(self.check_interval_s, max(0.0, self._heal_at - self._clock()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._wake.wait()
            self._wake.clear()
            if not await self.round() and self._clock() >= self._heal_at:
                await self.heal()

    @property
    def next_island_check(self) -> float:
        """When the next island check is due (on the ``clock`` given)."""
        return self._heal_at

    def backoff_s(self) -> float:
        """The pause after ``failures`` failed rounds in a row (0 after a success)."""
        if not self.failures:
            return 0.0
        base = min(self.max_backoff_s, RETRY_AFTER_FAILED_DIALS_S * 2.0 ** (self.failures - 1))
        return float(base * self._rng.uniform(0.5, 1.5))

    async def round(self) -> bool:
        """One bootstrap attempt; True when the node was alone and connected to someone."""
        if not self._alone() or not self.signaling.connected:
            return False
        try:
            candidates = await self.signaling.peers(self.peers_wanted * 2)
        except Exception as exc:  # server gone again: the next wake-up retries
            log.debug("signaling peers failed: %s", exc)
            return False
        if not candidates:
            return False
        picks = candidates[: self.peers_wanted]
        self.rounds += 1
        outcomes = await asyncio.gather(*(self._dial(p) for p in picks), return_exceptions=True)
        if not any(r is True for r in outcomes):
            self.failures += 1
            log.info(
                "bootstrap: none of %d dials succeeded; retrying in ~%.0f s",
                len(picks),
                min(self.max_backoff_s, RETRY_AFTER_FAILED_DIALS_S * 2 ** (self.failures - 1)),
            )
            return False
        self.failures = 0
        self._joined()
        return True

    async def heal(self) -> bool:
        """One island check (see the module docstring); True when it joined through a stranger."""
        gap = self._heal_gap
        self._heal_gap = min(self.heal_max_s, gap * 2.0)
        self._heal_at = self._clock() + gap * self._rng.uniform(0.75, 1.25)
        if self._alone() or not self.signaling.connected:
            return False
        try:
            candidates = await self.signaling.peers(self.peers_wanted * 2)
        except Exception as exc:
            log.debug("signaling peers failed: %s", exc)
            return False
        strangers = [p for p in candidates if not self._covers(p)][: self.peers_wanted]
        if not strangers:
            return False
        outcomes = await asyncio.gather(*(self._dial(p) for p in strangers), return_exceptions=True)
        if not any(r is True for r in outcomes):
            return False
        self.merges += 1
        log.info("bootstrap: joined again through %d registered stranger(s)", len(strangers))
        self._joined()
        return True

    def _joined(self) -> None:
        self._join()
        self._heal_gap = self.heal_first_s
        self._heal_at = self._clock() + self.heal_first_s
