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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from node.ids import NodeId
from node.signaling_port import SignalingPort

log = logging.getLogger(__name__)

BOOTSTRAP_CHECK_S = 5.0
RETRY_AFTER_FAILED_DIALS_S = 0.5
BOOTSTRAP_MAX_BACKOFF_S = 60.0


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
        check_interval_s: float = BOOTSTRAP_CHECK_S,
        max_backoff_s: float = BOOTSTRAP_MAX_BACKOFF_S,
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

    def wake(self) -> None:
        """Check now (the node may have lost its peers, or the server came back)."""
        self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled."""
        while True:
            if self.failures:
                await asyncio.sleep(self.backoff_s())
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.check_interval_s):
                        await self._wake.wait()
            self._wake.clear()
            await self.round()

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
        self._join()
        return True
