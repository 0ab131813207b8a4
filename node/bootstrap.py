"""Bootstrap: whenever the node has no peers, ask the signaling server for some, dial, join.

The loop sleeps until woken (``wake()``: registered with the signaling server, or the last link
went down) or ``BOOTSTRAP_CHECK_S`` passes. Each round that finds the node alone asks the server
for ``2 × peers_wanted`` candidates, dials the first ``peers_wanted`` in parallel and, when at
least one dial succeeds, runs the core's join (a lookup of the own ID and bucket refreshes).
A round never ends the loop: a failed request or dial is retried on the next wake-up — after
``RETRY_AFTER_FAILED_DIALS_S`` when every dial failed (the server hands out different untested
candidates to a node that asks again, so a newcomer handed fakes is not kept waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from node.ids import NodeId
from node.signaling_port import SignalingPort

log = logging.getLogger(__name__)

BOOTSTRAP_CHECK_S = 5.0
RETRY_AFTER_FAILED_DIALS_S = 0.5


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
    ) -> None:
        self.signaling = signaling
        self._dial = dial
        self._alone = alone
        self._join = join
        self.peers_wanted = peers_wanted
        self.check_interval_s = check_interval_s
        self.rounds = 0
        """Rounds that dialed candidates (diagnostics)."""
        self._wake = asyncio.Event()
        self._dials_failed = False

    def wake(self) -> None:
        """Check now (the node may have lost its peers, or the server came back)."""
        self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                wait = RETRY_AFTER_FAILED_DIALS_S if self._dials_failed else self.check_interval_s
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            await self.round()

    async def round(self) -> bool:
        """One bootstrap attempt; True when the node was alone and connected to someone."""
        if not self._alone() or not self.signaling.connected:
            self._dials_failed = False
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
        self._dials_failed = not any(r is True for r in outcomes)
        if self._dials_failed:
            log.info("bootstrap: none of %d dials succeeded; retrying", len(picks))
            return False
        self._join()
        return True
