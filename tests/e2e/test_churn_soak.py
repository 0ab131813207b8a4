"""Churn soak on a real process cluster (issue 13): 30 peers, one SIGKILLed every 30 s for 8 min
(the supervisor restarts it), gets of stored keys at 10/s from random peers. Every get addressed
to a live peer must return the stored value; a get addressed to the peer that is down at that
moment is not counted (it cannot answer).

``DHT_CHURN_SOAK_S`` shortens or lengthens the churn phase (default 480 s). ``make soak`` runs it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from supervisor.cluster import Cluster
from supervisor.errors import SupervisorError

pytestmark = [pytest.mark.slow, pytest.mark.soak, pytest.mark.timeout(1800)]

PEERS = 30
KEYS = 100
KILL_EVERY_S = 30.0
GETS_PER_S = 10.0
CHURN_S = float(os.environ.get("DHT_CHURN_SOAK_S", "480"))
SEED = random.randrange(1 << 30)


@dataclass
class Reader:
    """Gets at ``GETS_PER_S`` from random peers, skipping the peer that is down."""

    cluster: Cluster
    values: dict[str, bytes]
    rng: random.Random
    down: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        keys = list(self.values)
        next_at = time.monotonic()
        while not self.stop.is_set():
            next_at += 1.0 / GETS_PER_S
            time.sleep(max(0.0, next_at - time.monotonic()))
            key = self.rng.choice(keys)
            index = self.rng.choice(self.cluster.nodes)
            with self.lock:
                if index in self.down:
                    self.skipped += 1
                    continue
            try:
                got = self.cluster.node(index).get(key).value
                error = None if got == self.values[key] else f"wrong value {got!r}"
            except SupervisorError as exc:
                error = f"{type(exc).__name__}: {exc}"
            with self.lock:
                if index in self.down:  # it went down while answering: not addressed to a live peer
                    self.skipped += 1
                elif error is None:
                    self.ok += 1
                else:
                    self.failures.append(
                        f"{time.strftime('%H:%M:%S')} get {key} @ node {index}: {error}"
                    )


def test_churn_soak_every_get_to_a_live_peer_succeeds(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    cluster = Cluster.up(PEERS, "process", f"churn{rng.randrange(1 << 20)}", state_dir=tmp_path,
                         timeout_s=300)  # fmt: skip
    try:
        values = {f"churn-{i}": f"value-{i}".encode() for i in range(KEYS)}
        for key, value in values.items():
            cluster.node(rng.choice(cluster.nodes)).store(key, value)
        reader = Reader(cluster, values, random.Random(rng.random()))
        thread = threading.Thread(target=reader.run, daemon=True)
        thread.start()
        kills = 0
        end = time.monotonic() + CHURN_S
        try:
            while time.monotonic() < end:
                victim = rng.choice(cluster.nodes)
                since = cluster.event_count()
                with reader.lock:
                    reader.down.add(victim)
                cluster.kill(victim)
                kills += 1
                cluster.wait_restarted(victim, timeout_s=60, since=since)
                with reader.lock:
                    reader.down.discard(victim)
                time.sleep(max(0.0, min(KILL_EVERY_S, end - time.monotonic())))
        finally:
            reader.stop.set()
            thread.join(30)
        print(f"{kills} kills, {reader.ok} gets ok, {reader.skipped} addressed to a down peer")
        assert kills >= CHURN_S / KILL_EVERY_S - 2
        assert reader.ok >= GETS_PER_S * CHURN_S * 0.5  # the reader really ran
        assert reader.failures == [], "\n".join(reader.failures[:20])
    finally:
        cluster.down(purge=True)
