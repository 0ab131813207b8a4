"""Density benchmark: how many real WebRTC peers one machine holds, and what each costs.

    python bench/density.py --peers 25,50,100,200 [--backend process] [--settle 30] [--idle 20]

For each cluster size: time until formed (``Cluster.up``) and the CPU seconds the cluster
spent on it, idle CPU of the whole cluster
(supervisor, signaling and every peer) over ``--idle`` seconds starting ``--settle`` seconds
after forming, PSS and RSS per peer from
``/proc/PID/smaps_rollup``, put and get latency measured at the node (the ``duration_ms`` the
node reports, so the control hop is not counted), success rates, and open links per peer (the
``peers`` command). The load average (``/proc/loadavg``) is printed beside every run: on a
shared machine a number without it means little.

Prints one JSON document: ``{"runs": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import cluster_pids, container_pids, cpu_s, percentiles
from supervisor.cluster import Cluster
from supervisor.errors import SupervisorError


def smaps_rollup_kib(pid: int) -> dict[str, int]:
    """``Rss`` and ``Pss`` of one process in KiB (empty when it is gone or unreadable)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss") and rest.split():
            out[name] = int(rest.split()[0])
    return out


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def peer_pids(c: Cluster) -> list[int]:
    """Peer processes: PIDs for the process backend, containers' main processes for Docker."""
    state = c.state
    pids = [int(r) for r in (n.ref for n in state.nodes) if r and r.isdigit()]
    return pids if state.backend == "process" else pids + container_pids(c.name)


def memory(pids: list[int]) -> dict[str, float | None]:
    rollups = [r for r in (smaps_rollup_kib(p) for p in pids) if r]
    if not rollups:
        return {"pss_mib": None, "rss_mib": None}
    return {
        "pss_mib": round(statistics.mean(r.get("Pss", 0) for r in rollups) / 1024, 1),
        "rss_mib": round(statistics.mean(r.get("Rss", 0) for r in rollups) / 1024, 1),
    }


def links(c: Cluster, peers: int) -> dict[str, float | None]:
    counts = []
    for i in range(1, peers + 1):
        try:
            counts.append(len(c.node(i).peers()))
        except SupervisorError:
            continue
    if not counts:
        return {"mean": None, "max": None}
    return {"mean": round(statistics.mean(counts), 1), "max": max(counts)}


def idle_cores(pids: list[int], seconds: float) -> float:
    before, t0 = sum(cpu_s(p) for p in pids), time.monotonic()
    time.sleep(seconds)
    return round((sum(cpu_s(p) for p in pids) - before) / (time.monotonic() - t0), 3)


def operations(c: Cluster, peers: int, puts: int, gets: int) -> dict[str, Any]:
    rng = random.Random(int(os.environ.get("BENCH_SEED", "1")))
    keys: dict[str, bytes] = {}
    put_ms: list[float] = []
    for i in range(puts):
        key, value = f"density-{i}", secrets.token_bytes(64)
        try:
            put_ms.append(float(c.node(rng.randint(1, peers)).store(key, value)["duration_ms"]))
            keys[key] = value
        except SupervisorError:
            pass
    get_ms: list[float] = []
    get_ok = 0
    names = list(keys)
    for _ in range(gets if names else 0):
        key = rng.choice(names)
        try:
            r = c.node(rng.randint(1, peers)).call("get", key=key)
        except SupervisorError:
            continue
        if r.get("value") == keys[key]:
            get_ok += 1
            get_ms.append(float(r["duration_ms"]))
    return {
        "put_success": round(len(put_ms) / puts, 4) if puts else None,
        "put_ms_at_node": percentiles(put_ms),
        "get_success": round(get_ok / gets, 4) if gets and names else None,
        "get_ms_at_node": percentiles(get_ms),
    }


def run(
    peers: int, backend: str, settle_s: float, idle_s: float, puts: int, gets: int, timeout_s: float
) -> dict[str, Any]:
    load_before = loadavg()
    started = time.monotonic()
    with Cluster.up(peers=peers, backend=backend, timeout_s=timeout_s) as c:
        formed_s = round(time.monotonic() - started, 2)
        pids = cluster_pids(c)
        # CPU the cluster spent to get here: unlike the wall time, hardly inflated by other
        # load on the machine (peers forked from a zygote count from their fork)
        formed_cpu_s = round(sum(cpu_s(p) for p in pids), 1)
        time.sleep(settle_s)
        idle = idle_cores(pids, idle_s)
        mem = memory(peer_pids(c))
        open_links = links(c, peers)
        ops = operations(c, peers, puts, gets)
        return {
            "peers": peers,
            "backend": backend,
            "formed_s": formed_s,
            "formed_cpu_s": formed_cpu_s,
            "idle_cores": idle,
            "idle_window_s": [settle_s, settle_s + idle_s],
            **{f"{k}_per_peer": v for k, v in mem.items()},
            "links_per_peer": open_links,
            **ops,
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--peers", default="25,50,100", help="comma-separated cluster sizes")
    parser.add_argument("--backend", default="process", choices=("process", "docker", "auto"))
    parser.add_argument("--settle", type=float, default=30.0, help="seconds formed before idle")
    parser.add_argument("--idle", type=float, default=20.0, help="idle CPU window, seconds")
    parser.add_argument("--puts", type=int, default=100)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0)
    ns = parser.parse_args()
    try:
        sizes = [int(x) for x in ns.peers.split(",") if x.strip()]
    except ValueError:
        parser.error("--peers takes comma-separated integers, e.g. 25,50,100")
    if not sizes or min(sizes) < 1 or ns.puts < 1 or min(ns.gets, ns.idle, ns.settle) < 0:
        parser.error("--peers must be >= 1, --puts >= 1, --gets/--idle/--settle >= 0")
    runs = []
    for n in sizes:
        try:
            runs.append(run(n, ns.backend, ns.settle, ns.idle, ns.puts, ns.gets, ns.timeout))
        except SupervisorError as exc:
            failed = {"peers": n, "backend": ns.backend, "error": str(exc)}
            runs.append({**failed, "loadavg": loadavg()})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
