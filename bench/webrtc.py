"""WebRTC DHT benchmark: link setup and RTT, then get/store latency on a 10-process cluster.

    .venv/bin/python bench/webrtc.py [--nodes 10] [--keys 50] [--gets 500]

Prints one JSON document. Latencies of get/store are measured *at the calling node* (the
operation's own duration inside the node, warm connections) and, separately, as seen by a
control-plane client (adds the ZeroMQ round trip). Targets (issue #3): get p50 <= 2 ms, p99 <= 10
ms; store (quorum acked) p50 <= 5 ms; connection setup p50 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.webrtc_link import bench_rtt_cross_process, bench_setup  # noqa: E402
from tests.support.procs import proc_cluster  # noqa: E402


def pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    s = sorted(samples)
    return round(s[min(len(s) - 1, int(len(s) * q))], 3)


def summary(samples: list[float]) -> dict[str, float | None]:
    return {"p50": pct(samples, 0.50), "p90": pct(samples, 0.90), "p99": pct(samples, 0.99)}


def cluster_latencies(nodes: int, keys: int, gets: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp, proc_cluster(Path(tmp), nodes) as c:
        t0 = time.perf_counter()
        c.wait_formed(min_rt=min(8, nodes - 1), timeout_s=120)
        formed_s = time.perf_counter() - t0
        store_in: list[float] = []
        store_client: list[float] = []
        acks: list[int] = []
        for i in range(keys):
            node = rng.choice(c.nodes)
            t = time.perf_counter()
            r = node.call("store", key=f"bench-{i}", value=rng.randbytes(100))
            store_client.append((time.perf_counter() - t) * 1000)
            store_in.append(r["duration_ms"])
            acks.append(r["acks"])
        # Warm-up: every node touches every other once.
        for node in c.nodes:
            node.call("get", key="bench-0")
        get_in: list[float] = []
        get_client: list[float] = []
        hops: list[int] = []
        ok = 0
        for _ in range(gets):
            node = rng.choice(c.nodes)
            t = time.perf_counter()
            r = node.call("get", key=f"bench-{rng.randrange(keys)}")
            get_client.append((time.perf_counter() - t) * 1000)
            get_in.append(r["duration_ms"])
            hops.append(r["hops"])
            ok += 1
        return {
            "nodes": nodes,
            "formed_s": round(formed_s, 2),
            "store_ms_at_node": summary(store_in),
            "store_ms_client": summary(store_client),
            "store_acks_min": min(acks),
            "get_ms_at_node": summary(get_in),
            "get_ms_client": summary(get_client),
            "get_hops": summary([float(h) for h in hops]),
            "get_success_rate": ok / gets,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--keys", type=int, default=50)
    p.add_argument("--gets", type=int, default=500)
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--pings", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    out: dict[str, Any] = {
        "link_setup_ms": asyncio.run(bench_setup(a.connections)),
        "link_rtt_ms_cross_process": asyncio.run(bench_rtt_cross_process(a.pings)),
        "cluster": cluster_latencies(a.nodes, a.keys, a.gets, a.seed),
        "targets": {
            "get_p50_ms": 2,
            "get_p99_ms": 10,
            "store_p50_ms": 5,
            "setup_p50_ms": 50,
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
