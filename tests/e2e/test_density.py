"""Density on the process backend: departures seen at once, a 60-peer cluster served and torn
down clean (slow).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from supervisor.cluster import Cluster
from supervisor.errors import SupervisorError
from supervisor.state import pid_alive

DEPARTURE_SEEN_S = 2.0


def table_ids(c: Cluster, index: int) -> set[str]:
    dump = c.node(index).dump()
    return {contact["id"] for b in dump["buckets"] for contact in b["contacts"]}


def get_eventually(c: Cluster, index: int, key: str, timeout_s: float) -> bytes | None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return c.node(index).get(key).value
        except SupervisorError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)


def parent_cmdline(pid: int) -> str:
    ppid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    return Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_forked_worker_sigkill_restarts_with_same_id_and_others_serve() -> None:
    with Cluster.up(peers=4, timeout_s=180) as c:
        refs = {n.index: int(n.ref) for n in c.state.nodes if n.ref}
        assert all("peer.zygote" in parent_cmdline(pid) for pid in refs.values())
        assert len(set(refs.values())) == 4  # separate processes
        ids = {i: c.node(i).id() for i in refs}
        c.node(1).store("k", b"v")
        since = c.event_count()
        os.kill(refs[2], signal.SIGKILL)
        assert c.node(3).get("k").value == b"v"  # the others keep serving
        c.wait_restarted(2, timeout_s=60, since=since)
        record = c.state.node(2)
        assert record is not None
        assert record.ref is not None
        new_pid = int(record.ref)
        assert new_pid != refs[2]
        assert "peer.zygote" in parent_cmdline(new_pid)
        assert c.node(2).id() == ids[2]  # same key, so the same data dir
        assert get_eventually(c, 2, "k", 60.0) == b"v"  # once it has rejoined


def test_scale_down_survivors_drop_the_departed_at_once() -> None:
    with Cluster.up(peers=8, timeout_s=180) as c:
        ids = {i: c.node(i).id() for i in range(1, 9)}
        assert all(len(table_ids(c, i)) == 7 for i in range(1, 9))
        c.front.call("cluster.scale", {"peers": 3})
        scaled = time.monotonic()
        want = {i: {ids[j] for j in (1, 2, 3) if j != i} for i in (1, 2, 3)}
        seen: dict[int, set[str]] = {}
        while time.monotonic() - scaled < DEPARTURE_SEEN_S:
            seen = {i: table_ids(c, i) for i in (1, 2, 3)}
            if seen == want:
                break
            time.sleep(0.1)
        assert seen == want, f"after {DEPARTURE_SEEN_S} s the survivors still list {seen}"
        assert all(len(c.node(i).peers()) == 2 for i in (1, 2, 3))


@pytest.mark.slow
def test_sixty_peers_form_serve_every_get_and_leave_nothing() -> None:
    peers = 60
    rng = random.Random(60)
    with Cluster.up(peers=peers, timeout_s=600) as c:
        pids = [int(n.ref) for n in c.state.nodes if n.ref and n.ref.isdigit()]
        supervisor_pid = c.state.supervisor_pid
        assert len(pids) == peers
        keys = {f"k{i}": rng.randbytes(16) for i in range(20)}
        for key, value in keys.items():
            c.node(rng.randint(1, peers)).store(key, value)
        served = 0
        for _ in range(200):
            key = rng.choice(list(keys))
            try:
                served += c.node(rng.randint(1, peers)).get(key).value == keys[key]
            except SupervisorError:
                pass
        assert served == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    assert [p for p in pids if pid_alive(p)] == []
    assert supervisor_pid is None or not pid_alive(supervisor_pid)
