"""NAT lab benchmark: connection setup time by path, and put/get latency behind NATs beside the
same figures on loopback. Needs root, iproute2, nftables and coturn (``supervisor.natlab``).

    sudo .venv/bin/python bench/nat_lab.py [--dials 10] [--peers 6] [--puts 50] [--gets 200]

* ``setup_ms``: per NAT pairing, ``--dials`` WebRTC dials one after another between two lab
  namespaces (``bench.nat_dial``: offer creation -> data channel open on the offerer, ICE
  gathering with the lab's STUN/TURN included), p50/p90, and the paths the dials took;
  ``loopback`` is the same on 127.0.0.1 with no ICE servers.
* ``clusters``: a ``--peers`` cluster on loopback and one in the lab (``--nat``, default half
  EIM, half symmetric, 2 on the wan): time to formed, the links by path, and put/get latency
  as the calling node measures it (``duration_ms``, like bench/density.py).

Prints one JSON document, with the load average before and after (the numbers are noisy on a
shared machine: run it several times).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import percentiles
from bench.density import operations
from bench.nat_dial import dial_pair
from supervisor import natlab
from supervisor.cluster import Cluster

PAIRINGS = {  # name: (offerer kind, answerer kind), both in the lab below
    "eim-eim": (1, 2),
    "eim-wan": (1, 5),
    "wan-wan": (5, 6),
    "symmetric-symmetric": (3, 4),
    "eim-symmetric": (2, 3),
}
LAB_KINDS = "eim,eim,symmetric,symmetric,wan,wan"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def setup_times(directory: Path, dials: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    offers, _ = dial_pair(
        None, "127.0.0.1", None, "127.0.0.1", directory / "loopback", [], 10.0, dials
    )
    out["loopback"] = summary(offers)
    lab_dir = directory / "lab"
    lab = natlab.build(
        natlab.plan(natlab.lab_tag(lab_dir), natlab.parse_kinds(LAB_KINDS, 6)), lab_dir
    )
    try:
        for name, (a, b) in PAIRINGS.items():
            ha, hb = lab.plan.host(a), lab.plan.host(b)
            offers, _ = dial_pair(
                ha.netns,
                ha.address,
                hb.netns,
                hb.address,
                directory / name,
                lab.ice_servers,
                10.0,
                dials,
            )
            out[name] = summary(offers)
    finally:
        natlab.teardown(lab_dir)
    return out


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if r.get("ok")]
    paths: dict[str, int] = {}
    for r in ok:
        paths[str(r["path"])] = paths.get(str(r["path"]), 0) + 1
    return {
        "dials": len(results),
        "ok": len(ok),
        "paths": paths,
        "setup_ms": percentiles([float(r["setup_s"]) * 1000 for r in ok]),
    }


def cluster_figures(
    directory: Path, peers: int, puts: int, gets: int, nat: str | None
) -> dict[str, Any]:
    started = time.monotonic()
    lab, kinds = ("nat", nat) if nat else ("", "eim")
    with Cluster.up(peers, state_dir=directory, timeout_s=120, lab=lab, nat=kinds) as c:
        formed_s = time.monotonic() - started
        paths: dict[str, int] = {}
        for i in range(1, peers + 1):
            for p in c.node(i).peers():
                paths[str(p["path"])] = paths.get(str(p["path"]), 0) + 1
        return {
            "formed_s": round(formed_s, 2),
            "link_ends_by_path": paths,
            **operations(c, peers, puts, gets),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dials", type=int, default=10)
    parser.add_argument("--peers", type=int, default=6)
    parser.add_argument("--nat", default="eim,symmetric,eim,symmetric,wan,wan")
    parser.add_argument("--puts", type=int, default=50)
    parser.add_argument("--gets", type=int, default=200)
    args = parser.parse_args()
    reason = natlab.can_build()
    if reason is not None:
        print(json.dumps({"error": reason}))
        return 1
    natlab.parse_kinds(args.nat, args.peers)
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="nat-bench-") as tmp:
        root = Path(tmp)
        setup = setup_times(root / "dials", args.dials)
        clusters = {
            "loopback": cluster_figures(root / "loop", args.peers, args.puts, args.gets, None),
            "lab": cluster_figures(root / "lab", args.peers, args.puts, args.gets, args.nat),
        }
    print(
        json.dumps(
            {
                "setup": setup,
                "clusters": clusters,
                "lab_nat": args.nat,
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
