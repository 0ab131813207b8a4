"""Where a backend runs each peer, for backends that decide it themselves (Swarm).

The process and Docker backends run a peer where the supervisor says, on ports it allocated;
the Swarm backend places tasks on swarm nodes and may move them (a node goes down, a task is
rescheduled), so a peer's control and event endpoints are only known once it is placed and can
change later. A launcher that places peers itself has ``endpoints(handle)`` →
``(control, events, host) | None``; ``Placements`` asks it (in a worker thread) and tells the
supervisor when a peer's endpoints changed, so it reconnects its client and subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from supervisor.errors import LaunchError
from supervisor.launcher import Launcher, MemberHandle
from supervisor.members import Member

log = logging.getLogger(__name__)

Locate = Callable[[MemberHandle], "tuple[str, str, str] | None"]


class Placements:
    """The hosts the backend placed peers on, by peer index."""

    def __init__(self, launcher: Launcher) -> None:
        self._locate: Locate | None = getattr(launcher, "endpoints", None)
        self._hosts: dict[int, str] = {}

    @property
    def active(self) -> bool:
        """True when the backend places peers itself."""
        return self._locate is not None

    def host(self, index: int) -> str | None:
        return self._hosts.get(index)

    def status(self, index: int) -> dict[str, str | None]:
        """The ``host`` field of the peer's ``cluster.status`` entry (nothing when inactive)."""
        return {"host": self._hosts.get(index)} if self.active else {}

    def forget(self, index: int) -> None:
        self._hosts.pop(index, None)

    async def moved(self, member: Member) -> tuple[str, str] | None:
        """(control, events) when the member's endpoints differ from its client's, else None."""
        if self._locate is None or member.handle is None:
            return None
        try:
            where = await asyncio.to_thread(self._locate, member.handle)
        except LaunchError as exc:
            log.warning("cannot locate peer %d: %s", member.index, exc)
            return None
        if where is None:
            return None
        control, events, host = where
        self._hosts[member.index] = host
        if control == member.control and events == member.events:
            return None
        if member.control:
            log.info("peer %d moved: %s -> %s (%s)", member.index, member.control, control, host)
        return control, events
