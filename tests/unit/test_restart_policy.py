"""supervisor.restart: the restart policy as a pure function of state and ``now`` (no clock)."""

from __future__ import annotations

import pytest

from supervisor.restart import (
    Phase,
    RestartPolicy,
    RestartState,
    counted,
    delay_s,
    exited,
    initial,
    is_due,
    started,
    stopped,
)

POLICY = RestartPolicy(initial_backoff_s=0.5, max_backoff_s=4.0, stable_after_s=60.0)


def crash_loop(state: RestartState, now: float, times: int) -> tuple[RestartState, list[float]]:
    """Crash right after each start; restart as soon as due. Returns the delays seen."""
    delays = []
    for _ in range(times):
        state = exited(POLICY, state, now)
        wait = delay_s(state, now)
        assert wait is not None
        delays.append(wait)
        now += wait
        assert is_due(state, now)
        state = started(counted(state), now)
    return state, delays


def test_backoff_doubles_up_to_the_cap_and_counts_restarts() -> None:
    state = started(initial(POLICY), now=100.0)
    state, delays = crash_loop(state, 100.0, 6)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert state.restarts == 6
    assert state.crashes_in_row == 6
    assert state.phase is Phase.RUNNING


def test_not_due_before_the_backoff() -> None:
    state = exited(POLICY, started(initial(POLICY), 10.0), 11.0)
    assert state == RestartState(
        phase=Phase.BACKOFF,
        restarts=0,
        backoff_s=1.0,
        started_at=10.0,
        due=11.5,
        crashes_in_row=1,
        last_ran_s=1.0,
    )
    assert not is_due(state, 11.49)
    assert delay_s(state, 11.0) == pytest.approx(0.5)
    assert is_due(state, 11.5)
    assert delay_s(state, 20.0) == 0.0


def test_a_stable_run_resets_the_backoff() -> None:
    state, _ = crash_loop(started(initial(POLICY), 0.0), 0.0, 4)  # backoff now at the cap
    ran_until = state.started_at + POLICY.stable_after_s
    state = exited(POLICY, state, ran_until)
    assert delay_s(state, ran_until) == POLICY.initial_backoff_s
    assert state.crashes_in_row == 1
    assert state.last_ran_s == POLICY.stable_after_s


def test_exits_outside_running_are_not_crashes() -> None:
    never_started = initial(POLICY)
    assert exited(POLICY, never_started, 5.0) is never_started
    asked = stopped(started(initial(POLICY), 1.0))
    assert asked.phase is Phase.STOPPED
    assert exited(POLICY, asked, 2.0) is asked
    assert not is_due(asked, 1e9)
    pending = exited(POLICY, started(initial(POLICY), 1.0), 2.0)
    assert stopped(pending).due is None  # stopping cancels a scheduled restart
    assert delay_s(stopped(pending), 2.0) is None


def test_give_up_after_consecutive_unstable_crashes() -> None:
    policy = RestartPolicy(initial_backoff_s=1.0, max_backoff_s=8.0, give_up_after=3)
    state, now = started(initial(policy), 0.0), 0.0
    for expected in (Phase.BACKOFF, Phase.BACKOFF, Phase.BACKOFF, Phase.GAVE_UP):
        now += 1.0
        state = exited(policy, state, now)
        assert state.phase is expected
        if state.phase is Phase.BACKOFF:
            assert state.due is not None
            now = state.due
            state = started(counted(state), now)
    assert state.restarts == 3
    assert not is_due(state, now + 1e6)


def test_counted_adds_engine_restarts() -> None:
    assert counted(initial(POLICY), 3).restarts == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_backoff_s": 0.0},
        {"initial_backoff_s": 5.0, "max_backoff_s": 1.0},
        {"give_up_after": 0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]
