"""Persistence with real node processes: a SIGKILL mid-write-burst loses no acknowledged record.

Two peers: node 1 stores a burst of keys (8 writers in parallel); every STORE goes to node 2,
whose STORE_ACK is the only ack there is (``acks >= 1`` in node 1's result). Node 2 is SIGKILLed
in the middle of the burst. Then node 1 stops for good and node 2 is started again on the same
data dir, alone: every key node 1 saw acknowledged must be served by node 2 from its own store.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from control.client import ControlClient
from control.errors import RemoteError
from tests.support.procs import proc_cluster, wait_for

WRITERS = 8
KEYS_PER_WRITER = 60
KILL_AFTER_ACKS = 120


def test_every_acknowledged_store_survives_sigkill(tmp_path: Path) -> None:
    with proc_cluster(tmp_path, 2) as cluster:
        cluster.wait_formed(1)
        n1, n2 = cluster.nodes
        acked: list[str] = []
        lock = threading.Lock()

        def writer(w: int) -> None:
            with ControlClient(n1.control, timeout_s=15.0) as client:
                for i in range(KEYS_PER_WRITER):
                    key = f"burst-{w}-{i}"
                    try:
                        r = client.call("store", key=key, value=key.encode())
                    except Exception:
                        continue
                    if r.get("acks", 0) >= 1:
                        with lock:
                            acked.append(key)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= KILL_AFTER_ACKS, 60, "the first acknowledged stores")
        n2.kill()
        for t in threads:
            t.join(120)
        n1.stop()
        assert len(acked) >= KILL_AFTER_ACKS
        assert len(acked) < WRITERS * KEYS_PER_WRITER, "the kill came after the burst"

        n2.expect_dead = False
        n2.start(cluster.signaling.url)
        wait_for(lambda: _answers(n2.control), 30, "node 2 to answer again")
        started = time.monotonic()
        missing = []
        with ControlClient(n2.control, timeout_s=15.0) as client:
            for key in acked:
                try:
                    value = client.call("get", key=key)["value"]
                except RemoteError:
                    value = None
                if value != key.encode():
                    missing.append(key)
        assert missing == [], f"{len(missing)} of {len(acked)} acknowledged keys lost"
        assert time.monotonic() - started < 60


def _answers(endpoint: str) -> bool:
    try:
        with ControlClient(endpoint, timeout_s=1.0) as client:
            return bool(client.call("id")["id"])
    except Exception:
        return False
