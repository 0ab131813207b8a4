"""aioice 0.13 adaptations of the ICE connectivity checks, so that direct paths win over relays.

aioice nominates aggressively (the controlling agent sets USE-CANDIDATE on every check) and
ICE completes as soon as one nominated pair succeeds; the checks still in flight are cancelled.
Three rules, each from the RFCs, keep a working hole-punched path from losing to the relay:

1. **Keep the highest-priority nominated pair.** ``Connection.check_complete`` stores *every*
   nominated pair that succeeds as the selected pair, so the last check to finish wins. RFC 5245
   section 8.1.1.2: "If multiple pairs are nominated, the agent uses the highest-priority
   nominated pair". Pair priority is computed the same way on both sides, so both agents settle
   on the same pair.
2. **Retransmit at once on an incoming check** (RFC 8445 section 7.3.1.4: for a pair already
   In-Progress the agent "SHOULD generate an immediate retransmit"). Hole punching: our first
   check to the peer's server-reflexive address is dropped by the peer's NAT until the peer
   has sent to us; its check arriving is the sign that the hole is open. aioice waits for its
   500 ms retransmission timer instead, and by then a relayed check has completed.
3. **Give direct pairs a head start** (``RELAY_GRACE_S``): a check that involves a relay
   candidate starts no earlier than that after the first check, while a direct pair is still
   alive (not failed). RFC 8445 lets an agent order and pace its checks; relayed pairs have
   the lowest priority anyway and only the peers that need TURN pay the delay.

``install()`` patches ``aioice.ice.Connection`` once per process; ``node.transport.webrtc``
calls it together with its other aioice hooks. Written against aioice 0.13.x.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aioice.ice

logger = logging.getLogger(__name__)

#: How long relayed checks wait for direct ones (rule 3).
RELAY_GRACE_S = 0.4
_STARTED_ATTR = "_webrtc_dht_checks_started"
_installed = False


def _priority(connection: Any, pair: Any) -> int:
    value: int = aioice.ice.candidate_pair_priority(
        pair.local_candidate, pair.remote_candidate, connection.ice_controlling
    )
    return value


def _relayed(pair: Any) -> bool:
    return bool(pair.local_candidate.type == "relay" or pair.remote_candidate.type == "relay")


def _direct_alive(connection: Any) -> bool:
    failed = aioice.ice.CandidatePair.State.FAILED
    return any(not _relayed(p) and p.state != failed for p in connection._check_list)


def install() -> None:
    """Patch ``aioice.ice.Connection`` (idempotent); see the module docstring."""
    global _installed
    if _installed:
        return
    connection_cls = aioice.ice.Connection
    needed = ("check_complete", "check_incoming", "check_start_task", "check_start")
    if not all(hasattr(connection_cls, name) for name in needed) or not hasattr(
        aioice.ice, "candidate_pair_priority"
    ):
        logger.warning("aioice lacks the check methods these rules patch: checks not adapted")
        return
    original_complete = connection_cls.check_complete
    original_incoming = connection_cls.check_incoming
    original_start_task = connection_cls.check_start_task

    def check_complete(self: Any, pair: Any) -> None:
        component = pair.component
        selected = self._nominated.get(component)
        original_complete(self, pair)
        now = self._nominated.get(component)
        later_and_worse = (
            selected is not None
            and now is not selected
            and _priority(self, selected) >= _priority(self, now)
        )
        if later_and_worse:
            self._nominated[component] = selected  # rule 1

    def check_incoming(self: Any, message: Any, addr: Any, protocol: Any) -> None:
        original_incoming(self, message, addr, protocol)
        for transaction in list(getattr(protocol, "transactions", {}).values()):
            if getattr(transaction, "_Transaction__addr", None) == addr:  # rule 2
                protocol.send_stun(transaction._Transaction__request, addr)

    def check_start_task(self: Any, pair: Any) -> None:
        loop = asyncio.get_running_loop()
        started = getattr(self, _STARTED_ATTR, None)
        if started is None:
            started = loop.time()
            setattr(self, _STARTED_ATTR, started)
        wait_s = started + RELAY_GRACE_S - loop.time()
        if pair.task is not None or wait_s <= 0 or not _relayed(pair) or not _direct_alive(self):
            original_start_task(self, pair)
            return
        # Rule 3: In-Progress now (so the pacing loop moves on), the request goes out later.
        self.check_state(pair, aioice.ice.CandidatePair.State.IN_PROGRESS)

        async def deferred() -> None:
            await asyncio.sleep(wait_s)
            await self.check_start(pair)

        pair.task = asyncio.create_task(deferred())

    connection_cls.check_complete = check_complete  # type: ignore[method-assign]
    connection_cls.check_incoming = check_incoming  # type: ignore[method-assign]
    connection_cls.check_start_task = check_start_task  # type: ignore[method-assign]
    _installed = True
