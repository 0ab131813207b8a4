"""Regression: a restart request racing the supervisor's monitor loop left an orphan process.

The monitor polls every member in a worker thread (a Docker API round trip per container). When
a restart request stopped a member meanwhile and had already begun launching its replacement,
the monitor took the old process's exit for a crash and launched *another* replacement,
overwriting the handle of the one the restart had started. That orphan kept its ports, ``down``
never learned of it, and the peer it belonged to crash-looped (restarts 1 → 7).

Here the supervisor runs in-process over the real process launcher whose ``state`` takes as long
as a Docker API call, with fake members (real processes, quick to start). Every peer of a 6-peer
cluster is restarted several times, concurrently, while the monitor runs. Afterwards each peer
must have been restarted exactly as often as asked, exactly one process per member must run,
and ``down`` (the supervisor's shutdown) must leave no process: checked by PID and by a scan of
/proc command lines.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from supervisor.cluster import FrontClient
from supervisor.launcher import MemberHandle, MemberSpec, MemberState, Role
from supervisor.processes import ProcessLauncher
from supervisor.spec import Backend, SupervisorConfig
from supervisor.state import pid_alive
from supervisor.supervisor import Health, Supervisor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PEERS = 6
ROUNDS = 10
PAUSES_S = (0.1, 0.25, 0.4, 0.55)
STATE_CALL_S = 0.05  # about one Docker API round trip on a loaded host
FAKE_NODE = ("python", "-m", "tests.support.fake_node", "fake-node", "--stats-interval", "0.5")
FAKE_SIGNALING = ("python", "-m", "tests.support.fake_node", "fake-signaling")


class SlowStateLauncher(ProcessLauncher):
    """The process launcher with an engine-like delay on every state query."""

    def state(self, handle: MemberHandle) -> MemberState:
        time.sleep(STATE_CALL_S)
        return super().state(handle)


class Recorder(SlowStateLauncher):
    """... which also remembers every process it ever started."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.started: list[int] = []

    def start(self, spec: MemberSpec) -> MemberHandle:
        handle = super().start(spec)
        self.started.append(int(handle.ref))
        return handle


def processes_mentioning(needle: str) -> dict[int, str]:
    """Every live process whose command line contains ``needle`` (pid → command line)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if needle in cmdline and state not in ("Z", "X"):
            found[int(entry.name)] = cmdline
    return found


async def wait_until(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.1)
    return cond()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "state"
    yield root
    ProcessLauncher(root).remove_cluster("race")  # never leave processes behind a failed test


async def test_restarts_racing_the_monitor_leave_no_process_after_down(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("FAKE_SHARED_DIR", str(shared))
    config = SupervisorConfig(
        cluster="race",
        peers=PEERS,
        backend=Backend.PROCESS,
        state_root=root,
        **dict.fromkeys(("front_port", "events_port", "metrics_port", "signaling_port"), 0),
        node_command=FAKE_NODE,
        signaling_command=FAKE_SIGNALING,
    )
    launcher = Recorder(root)
    sup = Supervisor(config, launcher)
    await sup.start()
    stopped = False
    try:
        assert await wait_until(lambda: all(m.health is Health.UP for m in sup.peers.values()), 60)

        def restart(index: int) -> int:
            client = FrontClient(sup.front_endpoint, timeout_s=60.0)
            try:
                return int(client.call("cluster.restart", {"index": index})["ref"])
            finally:
                client.close()

        loop = asyncio.get_running_loop()
        # The clients get their own threads: the supervisor's launcher calls need the default pool.
        with ThreadPoolExecutor(max_workers=PEERS) as clients:
            for round_ in range(ROUNDS):
                await asyncio.gather(
                    *(loop.run_in_executor(clients, restart, i) for i in range(1, PEERS + 1))
                )
                await asyncio.sleep(PAUSES_S[round_ % len(PAUSES_S)])  # vary the monitor's phase
        # A spurious restart by the monitor comes after its backoff (0.5 s): let it happen.
        await asyncio.sleep(2.0)
        restarts = {i: m.restarts for i, m in sup.peers.items()}
        # Peers carry the state dir in their command line (--data-dir); the signaling server
        # does not, and is checked by PID below.
        supervised = {int(m.handle.ref) for m in sup.peers.values() if m.handle is not None}
        await wait_until(lambda: set(processes_mentioning(str(root))) == supervised, 5)
        running = processes_mentioning(str(root))
        sup.stop_requested.set()
        await sup.close()
        stopped = True
        left = processes_mentioning(str(root))
        assert left == {}, (
            f"after down: {left}; before: {running}, supervised {supervised}, {restarts}"
        )
        assert [pid for pid in launcher.started if pid_alive(pid)] == []
        assert set(running) == supervised, f"running {running}, supervised {sorted(supervised)}"
        assert restarts == dict.fromkeys(range(1, PEERS + 1), ROUNDS)
    finally:
        if not stopped:
            await sup.close()


def test_process_launcher_down_stops_a_member_started_twice(tmp_path: Path) -> None:
    """Defence in depth: a second start of one member (by whatever mistake) does not drop the
    first process from the members file, so ``remove_cluster`` (``down``) still stops both."""
    root = tmp_path / "state"
    launcher = ProcessLauncher(root)
    spec = MemberSpec(
        cluster="twice",
        role=Role.PEER,
        index=1,
        argv=["python", "-c", "import time; time.sleep(120)", str(root)],
        log_path=str(root / "twice" / "node-1.log"),
    )
    first = launcher.start(spec)
    second = launcher.start(spec)
    pids = {int(first.ref), int(second.ref)}
    try:
        # A fresh child's /proc cmdline is briefly empty (the exec is still setting it up).
        deadline = time.monotonic() + 10
        while set(processes_mentioning(str(root))) != pids and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(processes_mentioning(str(root))) == pids
        assert {h.ref for h in launcher.find("twice")} == {first.ref, second.ref}
    finally:
        launcher.remove_cluster("twice")
    assert processes_mentioning(str(root)) == {}
    assert not [pid for pid in pids if pid_alive(pid)]
