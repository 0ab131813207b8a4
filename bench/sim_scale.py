"""Scale benchmark of the sans-IO core in the discrete-event simulator.

    .venv/bin/python bench/sim_scale.py [--runs join:10000:1000 oracle:100000:10000 ...] [--seed 1]

Each run is ``METHOD:NODES:LOOKUPS`` (``join``: the real join protocol; ``oracle``: tables from
the global view). Defaults: the issue's two targets plus the 1k/10k/100k hop table. For each run:
bootstrap, store 50 keys, ``LOOKUPS`` gets from random nodes, ``--parallel`` (100) in flight at
once — one by one, 10,000 gets would span ~25 virtual minutes, and a 100,000-node network would
run a full bucket-refresh round (every bucket of every node: tens of millions of messages) in
the middle of the measurement; the per-get numbers are the same either way (3,000 nodes, 1,000
gets: 1.52 vs 1.54 hops, 9.44 vs 9.45 messages). One JSON document with hops p50/p90, messages
per lookup, wall and CPU times, peak RSS (of this process, so far) and the checks (reported,
not asserted):

- 10,000 nodes with the real join + 1,000 lookups in <= 60 s of wall time;
- 100,000 nodes with the oracle + 10,000 lookups in <= 300 s and <= 8 GB RSS;
- next to each: ``log2(N)`` and the Kademlia expectation ``log2(N / k)`` for hops (a lookup
  learns about one more bit of prefix per hop, and the last ``log2 k`` bits come with the k
  closest), and ``alpha * log2(N / k) + k`` for messages.

Run it on a quiet machine and several times; report ``uptime`` with the numbers. ``cpu_s`` (the
process's CPU time for the run) is printed next to the wall time: on a shared machine it is the
steadier of the two, and the wall-time checks are only meaningful when the two are close.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from typing import Any

from node.sim.__main__ import run

JOIN_WALL_TARGET_S = 60.0
ORACLE_WALL_TARGET_S = 300.0
RSS_TARGET_BYTES = 8 * 1024**3
PARALLEL = 100  # gets in flight at once: 10,000 one by one span ~25 virtual minutes (see __doc__)
DEFAULT_RUNS = ["join:1000:1000", "join:10000:1000", "oracle:100000:10000"]


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def checks(report: dict[str, Any], rss: int, cpu_s: float) -> dict[str, Any]:
    lk = report["lookups"]
    n, k, alpha = report["nodes"], report["config"]["k"], report["config"]["alpha"]
    expected_hops = math.log2(max(n / k, 1.0))
    wall = report["bootstrap"]["wall_s"] + lk["wall_s"]
    out: dict[str, Any] = {
        "bootstrap_plus_lookups_wall_s": round(wall, 3),
        "run_cpu_s": round(cpu_s, 3),
        "peak_rss_mib": round(rss / 2**20),
        "log2_n": round(math.log2(n), 2),
        "expected_hops_log2_n_over_k": round(expected_hops, 2),
        "hops_p50": lk["hops"]["p50"],
        "hops_p90": lk["hops"]["p90"],
        "hops_ok": lk["hops"]["p90"] <= math.ceil(expected_hops),
        "expected_messages": round(alpha * expected_hops + k, 1),
        "messages_p50": lk["messages_per_lookup"]["p50"],
        "messages_p90": lk["messages_per_lookup"]["p90"],
        "get_success_ok": lk["get_success_rate"] == 1.0,
    }
    method = report["bootstrap"]["method"]
    if method == "join" and n >= 10_000:
        out["wall_target_s"] = JOIN_WALL_TARGET_S
        out["wall_ok"] = wall <= JOIN_WALL_TARGET_S
    if method == "oracle" and n >= 100_000:
        out["wall_target_s"] = ORACLE_WALL_TARGET_S
        out["wall_ok"] = wall <= ORACLE_WALL_TARGET_S
        out["rss_ok"] = rss <= RSS_TARGET_BYTES
    return out


def parse_run(text: str) -> tuple[str, int, int]:
    try:
        method, nodes, lookups = text.split(":")
        if method not in ("join", "oracle"):
            raise ValueError
        return method, int(nodes), int(lookups)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a run is join|oracle:NODES:LOOKUPS, got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/sim_scale.py", description=__doc__.split("\n")[0])
    p.add_argument(
        "--runs", type=parse_run, nargs="+", default=[parse_run(r) for r in DEFAULT_RUNS]
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--wire", action="store_true", help="run the codec on every message")
    p.add_argument("--parallel", type=int, default=PARALLEL, help="gets in flight at once")
    args = p.parse_args(argv)
    results = []
    for method, n, lookups in args.runs:
        cpu0 = time.process_time()
        report = run(
            n, lookups, seed=args.seed, bootstrap=method, wire=args.wire, parallel=args.parallel
        )
        report["checks"] = checks(report, peak_rss_bytes(), time.process_time() - cpu0)
        results.append(report)
        print(f"{method} {n} nodes done: {report['checks']}", file=sys.stderr, flush=True)
    json.dump({"bench": "sim_scale", "results": results}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
