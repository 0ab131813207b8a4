"""Cluster benchmark: bring-up time to formed, put/get latency through the supervisor front
endpoint, success rates, total RSS and CPU of the cluster processes.

    python bench/cluster.py --peers 10 --backend process --puts 200 --gets 1000

Prints one JSON document. RSS/CPU are read from /proc (process backend: supervisor, signaling
and every peer).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.cluster import Cluster
from supervisor.errors import SupervisorError

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentiles(samples_ms: list[float]) -> dict[str, float | None]:
    if not samples_ms:
        return {"p50": None, "p90": None, "p99": None}
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def container_pids(refs: list[str]) -> list[int]:
    """Host PIDs of containers' main processes (containers share the host PID view as root)."""
    if not refs:
        return []
    import docker

    client = docker.from_env()
    try:
        out = []
        for ref in refs:
            try:
                pid = int(client.api.inspect_container(ref)["State"]["Pid"])
            except docker.errors.DockerException:
                continue
            if pid > 0:
                out.append(pid)
        return out
    finally:
        client.close()


def cluster_pids(c: Cluster) -> list[int]:
    state = c.state
    refs = [r for r in [n.ref for n in state.nodes] + [state.signaling_ref] if r]
    pids = [int(r) for r in refs if r.isdigit()]
    pids += container_pids([r for r in refs if not r.isdigit()])
    if state.supervisor_pid:
        pids.append(state.supervisor_pid)
    return pids


def run(peers: int, backend: str, puts: int, gets: int, timeout_s: float) -> dict[str, Any]:
    rng = random.Random(int(os.environ.get("BENCH_SEED", "1")))
    started = time.monotonic()
    with Cluster.up(peers=peers, backend=backend, timeout_s=timeout_s) as c:
        bring_up_s = time.monotonic() - started
        pids = cluster_pids(c)
        cpu_before = sum(cpu_s(p) for p in pids)
        wall_before = time.monotonic()
        keys: dict[str, bytes] = {}
        put_ms: list[float] = []
        put_ok = 0
        for i in range(puts):
            key, value = f"bench-{i}", secrets.token_bytes(64)
            t = time.perf_counter()
            try:
                c.node(rng.randint(1, peers)).store(key, value)
                put_ok += 1
                keys[key] = value
            except SupervisorError:
                pass
            put_ms.append((time.perf_counter() - t) * 1000)
        get_ms: list[float] = []
        get_ok = 0
        names = list(keys)
        for _ in range(gets if names else 0):
            key = rng.choice(names)
            t = time.perf_counter()
            try:
                if c.node(rng.randint(1, peers)).get(key).value == keys[key]:
                    get_ok += 1
            except SupervisorError:
                pass
            get_ms.append((time.perf_counter() - t) * 1000)
        wall = time.monotonic() - wall_before
        cpu = sum(cpu_s(p) for p in pids) - cpu_before
        rss = sum(rss_kib(p) for p in pids)
        return {
            "peers": peers,
            "backend": backend,
            "bring_up_s": round(bring_up_s, 2),
            "puts": puts,
            "put_success": round(put_ok / puts, 4) if puts else None,
            "put_latency_ms": percentiles(put_ms),
            "gets": len(get_ms),
            "get_success": round(get_ok / len(get_ms), 4) if get_ms else None,
            "get_latency_ms": percentiles(get_ms),
            "rss_total_mib": round(rss / 1024, 1),
            "rss_per_peer_mib": round(rss / 1024 / max(1, len(pids)), 1),
            "cpu_s_during_ops": round(cpu, 2),
            "cpu_cores_during_ops": round(cpu / wall, 2) if wall > 0 else None,
            "processes": len(pids),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--peers", type=int, default=10)
    parser.add_argument("--backend", default="process", choices=("process", "docker", "auto"))
    parser.add_argument("--puts", type=int, default=200)
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=180.0)
    ns = parser.parse_args()
    if ns.peers < 1 or ns.puts < 0 or ns.gets < 0:
        parser.error("--peers must be >= 1, --puts/--gets >= 0")
    print(json.dumps(run(ns.peers, ns.backend, ns.puts, ns.gets, ns.timeout), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
