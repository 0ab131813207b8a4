"""Cluster members as the supervisor sees them, and the one place that starts and stops them.

``Lifecycle`` owns every launcher call that changes a member's process (start, stop, kill) and
the restart policy (``supervisor.restart``). Its rule, which is what keeps ``down`` from leaving
processes behind:

- **One lock per member.** Launching, stopping, an asked restart (stop + start) and a restart the
  monitor decides all hold the member's lock, so they never interleave on one member. Before this
  rule, a restart request could be between its stop and its start while the monitor, which had
  polled the old process, took that process's exit for a crash and started a second replacement
  over the first one's handle: an orphan that ``down`` never learned of.
- **Observations carry the generation they were made on.** ``poll`` snapshots each member's
  generation (bumped on every start); ``on_exit`` ignores an observation whose member has been
  started or stopped since, and one of a member that is not RUNNING.
- **A start is never lost.** A start runs in a worker thread; if the awaiting task is cancelled
  (shutdown), the start is still awaited and its handle recorded, so that ``stop`` finds it.
- **Nothing starts once ``closing`` is set**: shutdown sets it first, then stops every member
  under its lock.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import zmq.asyncio

from control.client import AsyncControlClient
from supervisor.launcher import Launcher, MemberHandle, MemberSpec, MemberState, Role
from supervisor.restart import (
    Phase,
    RestartPolicy,
    RestartState,
    counted,
    exited,
    is_due,
    started,
    stopped,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_TIMEOUT_S = 10.0


class Health(enum.StrEnum):
    UP = "up"
    STARTING = "starting"
    DOWN = "down"


@dataclass(eq=False)
class Member:
    """Runtime bookkeeping for one member (mutable; owned by the supervisor loop)."""

    spec: MemberSpec
    handle: MemberHandle | None = None
    generation: int = 0  # bumped on every start and stop
    health: Health = Health.STARTING
    restart: RestartState = field(default_factory=RestartState)
    node_id: str | None = None
    kind: str = "node"  # or "browser" (supervisor.browser_peer)
    control: str | None = None
    events: str | None = None
    client: AsyncControlClient | None = None
    sub: zmq.asyncio.Socket | None = None
    forwarder: asyncio.Task[None] | None = None
    last_exit_code: int | None = None
    announced_up: bool = False
    heard_at: float = 0.0  # monotonic time of the member's last event (a sign of life)
    engine_restarts_seen: int = 0  # the backend's own restart count (Docker RestartCount)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def index(self) -> int:
        return self.spec.index

    @property
    def role(self) -> Role:
        return self.spec.role

    @property
    def restarts(self) -> int:
        return self.restart.restarts

    @property
    def stopping(self) -> bool:
        """Stopped (or being stopped) on purpose: commands are refused, exits are not crashes."""
        return self.restart.phase is Phase.STOPPED


@dataclass(frozen=True, slots=True)
class Observation:
    """One poll of one member: what the launcher said about the process of ``generation``."""

    member: Member
    generation: int
    state: MemberState
    exit_code: int | None
    engine_restarts: int | None  # the backend's own restart count, when it has one


class Lifecycle:
    """Starts, stops, polls and restarts members through a ``Launcher`` (see module doc)."""

    def __init__(
        self,
        launcher: Launcher,
        policy: RestartPolicy,
        *,
        offload: bool,
        clock: Callable[[], float],
        on_change: Callable[[], None],
    ) -> None:
        self.launcher = launcher
        self.policy = policy
        self.offload = offload  # blocking launchers run in worker threads
        self.clock = clock
        self.on_change = on_change  # the state file is rewritten after every start
        self.closing = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.offload:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    # -- under the member's lock -----------------------------------------------------------------

    async def _start_locked(self, member: Member) -> bool:
        if self.closing:
            return False
        if member.handle is not None:
            # One process per member: whatever the handle names goes first (a no-op when it
            # has exited). Until the new handle is set, nothing is watched (no handle).
            await self._stop_handle(member)
            member.handle = None
        member.health = Health.STARTING
        member.announced_up = False
        member.generation += 1
        member.restart = started(member.restart, self.clock())
        try:
            member.handle = await self._start_unlosable(member)
            member.engine_restarts_seen = 0  # a new container
        except Exception as exc:
            # Treated like a crash: the monitor retries after the backoff.
            log.error("cannot start %s %d: %s", member.role, member.index, exc)
            member.health = Health.DOWN
            member.restart = exited(self.policy, member.restart, self.clock())
        self.on_change()
        return member.handle is not None

    async def _start_unlosable(self, member: Member) -> MemberHandle:
        if not self.offload:
            return self.launcher.start(member.spec)
        started = asyncio.ensure_future(asyncio.to_thread(self.launcher.start, member.spec))
        try:
            return await asyncio.shield(started)
        except asyncio.CancelledError:
            # The thread runs on: record what it started so that shutdown can stop it.
            handle = await started
            member.handle = handle
            raise

    async def _stop_locked(self, member: Member) -> None:
        member.restart = stopped(member.restart)
        member.generation += 1
        await self._stop_handle(member)
        member.health = Health.DOWN

    async def _stop_handle(self, member: Member) -> None:
        if member.handle is None:
            return
        try:
            await self.call(self.launcher.stop, member.handle, STOP_TIMEOUT_S)
        except Exception as exc:
            log.error("cannot stop %s %d: %s", member.role, member.index, exc)

    # -- the operations ------------------------------------------------------------------------

    async def start(self, member: Member) -> bool:
        async with member.lock:
            return await self._start_locked(member)

    async def stop(self, member: Member) -> None:
        async with member.lock:
            await self._stop_locked(member)

    async def restart(self, member: Member) -> int | None:
        """An asked restart: stop, count, start — atomically. Returns the old exit code."""
        async with member.lock:
            await self._stop_locked(member)
            code = (
                await self.call(self.launcher.exit_code, member.handle) if member.handle else None
            )
            member.last_exit_code = code
            member.handle = None  # stopped above: the start need not stop it again
            member.restart = counted(member.restart)
            await self._start_locked(member)
            return code

    async def kill(self, member: Member) -> MemberHandle | None:
        """SIGKILL the member's process (a crash the monitor then repairs)."""
        async with member.lock:
            if member.handle is not None:
                await self.call(self.launcher.kill, member.handle)
            return member.handle

    async def poll(self, members: list[Member]) -> list[Observation]:
        """The launcher's view of every RUNNING member (one worker-thread call for all)."""
        watched = [
            (m, m.generation, m.handle)
            for m in members
            if m.handle is not None and m.restart.phase is Phase.RUNNING
        ]
        if not watched:
            return []
        return await self.call(self._poll_blocking, watched)

    def _poll_blocking(
        self, watched: list[tuple[Member, int, MemberHandle | None]]
    ) -> list[Observation]:
        engine_restarts = getattr(self.launcher, "restart_count", None)
        out = []
        for member, generation, handle in watched:
            assert handle is not None
            st = self.launcher.state(handle)
            code = self.launcher.exit_code(handle) if st is not MemberState.RUNNING else None
            count = None
            if engine_restarts is not None and st is MemberState.RUNNING:
                # Docker restarts a crashed container itself (restart policy on-failure): count
                # those restarts too, so `status` shows every crash.
                count = int(engine_restarts(handle) or 0)
            out.append(Observation(member, generation, st, code, count))
        return out

    async def on_exit(self, obs: Observation) -> bool:
        """Act on an exit the monitor saw: schedule the restart. False when the observation is
        stale (the member was started or stopped since) or the member is not RUNNING."""
        member = obs.member
        async with member.lock:
            if member.generation != obs.generation or member.restart.phase is not Phase.RUNNING:
                return False
            member.health = Health.DOWN
            member.last_exit_code = obs.exit_code
            member.restart = exited(self.policy, member.restart, self.clock())
            return True

    async def restart_if_due(self, member: Member) -> bool:
        """Start a crashed member whose backoff has passed; True when it was started."""
        async with member.lock:
            if not is_due(member.restart, self.clock()):
                return False
            member.restart = counted(member.restart)
            return await self._start_locked(member)
