"""The restart policy: when a member that exited unasked is started again. Pure: every function
takes the member's ``RestartState`` (and ``now``, monotonic seconds) and returns the next one;
nothing here reads a clock, sleeps or touches a process.

The life of a member, as the supervisor sees it::

    STOPPED --started--> RUNNING --exited--> BACKOFF --(due: is_due)--> started again
       ^                   |                    |
       +-----stopped-------+--------------------+           exited too often --> GAVE_UP

- A member that exits while RUNNING (a crash, or a start that failed) is started again after a
  backoff: ``initial_backoff_s``, doubled on every further crash up to ``max_backoff_s``, back to
  the initial value once the member had run for ``stable_after_s``.
- ``give_up_after`` consecutive crashes without a stable run stop the restarts (GAVE_UP); the
  default ``None`` never gives up.
- ``restarts`` counts every start after the first (crash restarts, asked restarts, and restarts
  the backend did itself, e.g. Docker's restart policy); ``status`` shows it.
- Only a RUNNING member is watched: an exit seen in any other phase is not a crash.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Final

INITIAL_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 30.0
STABLE_AFTER_S: Final = 60.0


class Phase(enum.Enum):
    STOPPED = "stopped"  # never started, or stopped on purpose (restart, scale down, shutdown)
    RUNNING = "running"  # started; the monitor watches it
    BACKOFF = "backoff"  # exited unasked; started again at ``due``
    GAVE_UP = "gave_up"  # crashed ``give_up_after`` times in a row; left down


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial_backoff_s: float = INITIAL_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    stable_after_s: float = STABLE_AFTER_S
    give_up_after: int | None = None  # consecutive unstable crashes; None: never give up

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        if self.give_up_after is not None and self.give_up_after < 1:
            raise ValueError("give_up_after must be >= 1 (or None)")


@dataclass(frozen=True, slots=True)
class RestartState:
    phase: Phase = Phase.STOPPED
    restarts: int = 0
    backoff_s: float = INITIAL_BACKOFF_S  # the delay before the next crash restart
    started_at: float = 0.0
    due: float | None = None  # BACKOFF only
    crashes_in_row: int = 0
    last_ran_s: float = 0.0  # how long the member ran before its last exit


def initial(policy: RestartPolicy) -> RestartState:
    return RestartState(backoff_s=policy.initial_backoff_s)


def started(state: RestartState, now: float) -> RestartState:
    """The member was (re)started at ``now``."""
    return replace(state, phase=Phase.RUNNING, started_at=now, due=None)


def exited(policy: RestartPolicy, state: RestartState, now: float) -> RestartState:
    """The member exited unasked (or could not be started) at ``now``: schedule its restart.
    Only meaningful for a RUNNING member; any other phase is returned unchanged."""
    if state.phase is not Phase.RUNNING:
        return state
    ran_s = max(0.0, now - state.started_at)
    stable = ran_s >= policy.stable_after_s
    backoff_s = policy.initial_backoff_s if stable else state.backoff_s
    crashes = 1 if stable else state.crashes_in_row + 1
    if policy.give_up_after is not None and crashes > policy.give_up_after:
        return replace(
            state, phase=Phase.GAVE_UP, due=None, crashes_in_row=crashes, last_ran_s=ran_s
        )
    return replace(
        state,
        phase=Phase.BACKOFF,
        due=now + backoff_s,
        backoff_s=min(backoff_s * 2, policy.max_backoff_s),
        crashes_in_row=crashes,
        last_ran_s=ran_s,
    )


def delay_s(state: RestartState, now: float) -> float | None:
    """Seconds until the scheduled restart (0 when due), None when none is scheduled."""
    if state.phase is not Phase.BACKOFF or state.due is None:
        return None
    return max(0.0, state.due - now)


def is_due(state: RestartState, now: float) -> bool:
    return state.phase is Phase.BACKOFF and state.due is not None and now >= state.due


def stopped(state: RestartState) -> RestartState:
    """Stopped on purpose: not watched, no restart scheduled."""
    return replace(state, phase=Phase.STOPPED, due=None)


def counted(state: RestartState, restarts: int = 1) -> RestartState:
    """Count ``restarts`` more starts (a restart by us, or ones the backend did itself)."""
    return replace(state, restarts=state.restarts + restarts)
