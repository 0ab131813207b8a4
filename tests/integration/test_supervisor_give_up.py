"""The supervisor applies its restart policy to real processes: a peer that exits at once is
restarted with backoff, counted, and left down once the policy gives up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from supervisor.members import Health
from supervisor.processes import ProcessLauncher
from supervisor.restart import Phase, RestartPolicy
from supervisor.spec import Backend, SupervisorConfig
from supervisor.supervisor import Supervisor

pytestmark = pytest.mark.timeout(60)

CRASHING_NODE = ("python", "-c", "import sys; sys.exit(3)")
IDLE_SIGNALING = ("python", "-c", "import time; time.sleep(600)")


async def test_a_crash_looping_peer_is_restarted_then_given_up(tmp_path: Path) -> None:
    config = SupervisorConfig(
        cluster="giveup",
        peers=1,
        backend=Backend.PROCESS,
        state_root=tmp_path,
        **dict.fromkeys(("front_port", "events_port", "metrics_port", "signaling_port"), 0),
        node_command=CRASHING_NODE,
        signaling_command=IDLE_SIGNALING,
    )
    policy = RestartPolicy(initial_backoff_s=0.1, max_backoff_s=0.2, give_up_after=3)
    sup = Supervisor(config, ProcessLauncher(tmp_path), policy=policy)
    await sup.start()
    try:
        peer = sup.peers[1]
        deadline = time.monotonic() + 30
        while peer.restart.phase is not Phase.GAVE_UP:
            assert time.monotonic() < deadline, f"still {peer.restart}"
            await asyncio.sleep(0.05)
        assert peer.restarts == 3  # three restarts, the fourth exit gives up
        assert peer.restart.crashes_in_row == 4
        assert peer.last_exit_code == 3
        assert peer.health is Health.DOWN
        await asyncio.sleep(1.0)  # more than the backoff: nothing restarts it any more
        assert peer.restarts == 3
        assert sup.signaling is not None
        assert sup.signaling.restarts == 0
    finally:
        await sup.close()
