"""One aioice 0.13 adaptation: with several nominated pairs, keep the highest-priority one.

aioice nominates aggressively (the controlling agent sets USE-CANDIDATE on every check) and, in
``Connection.check_complete``, stores *every* nominated pair that succeeds as the component's
selected pair, so the last check to finish wins. Checks run in parallel, and a relayed check
started a few milliseconds after a hole-punching one often finishes last: the link then
silently moves its traffic to the TURN relay although the direct path works. RFC 5245
(section 8.1.1.2, aggressive nomination) says instead: "If multiple pairs are nominated, the
agent uses the highest-priority nominated pair". Pair priority (RFC 8445 section 6.1.2.3) is
computed the same way on both sides, so both agents settle on the same pair: direct before
relayed, as ICE's candidate priorities intend.

``install()`` wraps ``Connection.check_complete`` once per process; it is called by
``node.transport.webrtc`` together with its other aioice hooks.
"""

from __future__ import annotations

import logging
from typing import Any

import aioice.ice

logger = logging.getLogger(__name__)

_installed = False


def _priority(connection: Any, pair: Any) -> int:
    value: int = aioice.ice.candidate_pair_priority(
        pair.local_candidate, pair.remote_candidate, connection.ice_controlling
    )
    return value


def install() -> None:
    """Make ``Connection`` keep the highest-priority nominated pair (idempotent)."""
    global _installed
    if _installed:
        return
    original = getattr(aioice.ice.Connection, "check_complete", None)
    if original is None or not hasattr(aioice.ice, "candidate_pair_priority"):
        logger.warning("aioice has no check_complete/candidate_pair_priority: not adapted")
        return

    def check_complete(self: Any, pair: Any) -> None:
        component = pair.component
        selected = self._nominated.get(component)
        original(self, pair)
        now = self._nominated.get(component)
        later_and_worse = (
            selected is not None
            and now is not selected
            and _priority(self, selected) >= _priority(self, now)
        )
        if later_and_worse:
            self._nominated[component] = selected  # a lower-priority pair finished later

    aioice.ice.Connection.check_complete = check_complete  # type: ignore[method-assign]
    _installed = True
