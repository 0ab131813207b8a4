"""Scale benchmark of the sans-IO core in the discrete-event simulator.

    .venv/bin/python bench/sim_scale.py [--sizes 1000 10000] [--lookups 1000] [--seed 1]

For each size: bootstrap the network, store 50 keys, run ``--lookups`` gets from random nodes,
and print one JSON document with hops p50/p90, requests and messages per lookup, wall times and
the check against the targets (reported, not asserted):

- 10,000 nodes bootstrapped + 1,000 lookups in under 60 s of wall time (2-core machine);
- hops p50 <= 4 and p90 <= 5 at 10,000 nodes;
- messages per lookup <= alpha * hops + k (at p50 and p90).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from node.sim.__main__ import run

WALL_TARGET_S = 60.0
HOPS_P50_TARGET = 4
HOPS_P90_TARGET = 5


def checks(report: dict[str, Any]) -> dict[str, Any]:
    lk = report["lookups"]
    k, alpha = report["config"]["k"], report["config"]["alpha"]
    wall = report["bootstrap"]["wall_s"] + lk["wall_s"]
    out: dict[str, Any] = {
        "bootstrap_plus_lookups_wall_s": round(wall, 3),
        "messages_p50_bound": alpha * lk["hops"]["p50"] + k,
        "messages_p90_bound": alpha * lk["hops"]["p90"] + k,
    }
    out["messages_ok"] = (
        lk["messages_per_lookup"]["p50"] <= out["messages_p50_bound"]
        and lk["messages_per_lookup"]["p90"] <= out["messages_p90_bound"]
    )
    out["get_success_ok"] = lk["get_success_rate"] == 1.0
    if report["nodes"] >= 10_000:
        out["wall_ok"] = wall < WALL_TARGET_S
        out["hops_ok"] = (
            lk["hops"]["p50"] <= HOPS_P50_TARGET and lk["hops"]["p90"] <= HOPS_P90_TARGET
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/sim_scale.py", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    p.add_argument("--lookups", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    results = []
    for n in args.sizes:
        report = run(n, args.lookups, seed=args.seed)
        report["checks"] = checks(report)
        results.append(report)
        print(f"{n} nodes done", file=sys.stderr, flush=True)
    json.dump({"bench": "sim_scale", "results": results}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
