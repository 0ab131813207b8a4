"""One contract for every Launcher backend (process and memory here; Docker in its own suite).

The process backend runs tiny ``python -c`` children; the memory backend is told the same story
through its ``MEMORY_EXIT_CODE`` / ``MEMORY_OUTPUT`` hooks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from supervisor.launcher import Launcher, MemberHandle, MemberSpec, MemberState, Role
from supervisor.memory import EXIT_CODE_ENV, OUTPUT_ENV, MemoryLauncher, MemoryRegistry
from supervisor.processes import ProcessLauncher

SLEEPER = "import time\nwhile True: time.sleep(1)"
WAIT_S = 10.0


@dataclass
class Harness:
    make: Callable[[], Launcher]  # a fresh launcher instance over the same "machine"
    root: Path
    cluster: str = "contract"

    def spec(
        self, index: int, *, exit_code: int | None = None, output: str | None = None
    ) -> MemberSpec:
        code = [f"print({output!r}, flush=True)"] if output else []
        code.append(f"raise SystemExit({exit_code})" if exit_code is not None else SLEEPER)
        env: dict[str, str] = {}
        if exit_code is not None:
            env[EXIT_CODE_ENV] = str(exit_code)
        if output:
            env[OUTPUT_ENV] = output
        return MemberSpec(
            cluster=self.cluster,
            role=Role.PEER if index else Role.SIGNALING,
            index=index,
            argv=["python", "-c", "\n".join(code)],
            env=env,
            data_dir=str(self.root / self.cluster / "nodes" / str(index)),
            log_path=str(self.root / self.cluster / "logs" / f"{index}.log"),
        )


@pytest.fixture(params=["process", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "process":
        h = Harness(lambda: ProcessLauncher(tmp_path), tmp_path)
    else:
        registry = MemoryRegistry()
        h = Harness(lambda: MemoryLauncher(registry), tmp_path)
    yield h
    h.make().remove_cluster(h.cluster)


def wait_state(launcher: Launcher, handle: MemberHandle, state: MemberState) -> None:
    deadline = time.monotonic() + WAIT_S
    while launcher.state(handle) is not state:
        assert time.monotonic() < deadline, f"{handle} never reached {state}"
        time.sleep(0.02)


def test_start_reports_running_member(harness: Harness) -> None:
    launcher = harness.make()
    handle = launcher.start(harness.spec(1))
    assert (handle.cluster, handle.role, handle.index) == (harness.cluster, Role.PEER, 1)
    assert launcher.state(handle) is MemberState.RUNNING
    assert launcher.exit_code(handle) is None


def test_member_exit_code_is_reported(harness: Harness) -> None:
    launcher = harness.make()
    handle = launcher.start(harness.spec(2, exit_code=3))
    wait_state(launcher, handle, MemberState.EXITED)
    assert launcher.exit_code(handle) == 3


def test_kill_is_an_unclean_exit(harness: Harness) -> None:
    launcher = harness.make()
    handle = launcher.start(harness.spec(1))
    launcher.kill(handle)
    wait_state(launcher, handle, MemberState.EXITED)
    code = launcher.exit_code(handle)
    assert code is not None
    assert code != 0


def test_stop_ends_member_and_tolerates_repeats(harness: Harness) -> None:
    launcher = harness.make()
    handle = launcher.start(harness.spec(1))
    launcher.stop(handle, timeout_s=5)
    assert launcher.state(handle) is MemberState.EXITED
    launcher.stop(handle, timeout_s=5)  # already stopped: not an error
    assert launcher.state(handle) is MemberState.EXITED


def test_unknown_handle_is_missing(harness: Harness) -> None:
    launcher = harness.make()
    ghost = MemberHandle(harness.cluster, Role.PEER, 9, "999999999")
    assert launcher.state(ghost) is MemberState.MISSING
    launcher.stop(ghost, timeout_s=1)  # missing: not an error
    launcher.kill(ghost)


def test_logs_hold_member_output(harness: Harness) -> None:
    launcher = harness.make()
    handle = launcher.start(harness.spec(1, exit_code=0, output="hello from member"))
    wait_state(launcher, handle, MemberState.EXITED)
    assert "hello from member\n" in list(launcher.logs(handle))
    assert list(launcher.logs(handle, tail=0)) == []


def test_find_and_remove_cluster_from_another_instance(harness: Harness) -> None:
    first = harness.make()
    handles = [first.start(harness.spec(i)) for i in range(3)]
    other = harness.make()  # e.g. `orchestrate.py down` in another shell
    found = other.find(harness.cluster)
    assert sorted((h.role, h.index, h.ref) for h in found) == sorted(
        (h.role, h.index, h.ref) for h in handles
    )
    assert other.find("some-other-cluster") == []
    other.remove_cluster(harness.cluster)
    assert other.find(harness.cluster) == []
    for handle in handles:
        assert first.state(handle) is not MemberState.RUNNING
    other.remove_cluster(harness.cluster)  # idempotent


def test_restart_at_same_index_replaces_member(harness: Harness) -> None:
    launcher = harness.make()
    old = launcher.start(harness.spec(4))
    launcher.kill(old)
    new = launcher.start(harness.spec(4))
    assert new.ref != old.ref
    assert [h.ref for h in launcher.find(harness.cluster) if h.index == 4][-1] == new.ref
    assert launcher.state(new) is MemberState.RUNNING


def test_process_launcher_uses_current_interpreter_and_env(tmp_path: Path) -> None:
    launcher = ProcessLauncher(tmp_path)
    out = tmp_path / "out.txt"
    code = f"import os,sys; open({str(out)!r},'w').write(sys.executable + '|' + os.environ['X_T'])"
    handle = launcher.start(
        MemberSpec("c", Role.PEER, 1, ["python", "-c", code], env={"X_T": "42"})
    )
    wait_state(launcher, handle, MemberState.EXITED)
    assert out.read_text() == f"{sys.executable}|42"
    assert launcher.exit_code(handle) == 0
    launcher.remove_cluster("c")
