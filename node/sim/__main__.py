"""Run one simulated experiment and print one JSON object.

    python -m node.sim --nodes N --lookups L --churn FRACTION --seed S [--wire] [--loss P]

Steps: bootstrap ``N`` nodes (virtual and wall time measured), store ``--keys`` keys from random
nodes (store acks distribution), kill ``FRACTION`` of the nodes at random (churn), then run ``L``
gets of stored keys from random live nodes. Per lookup: ``hops`` (depth of the answering peer),
``requests`` (FIND_VALUE requests sent) and ``messages`` (requests plus the replies received,
``2 * contacted - failed``). Bad arguments exit with status 2 (argparse).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from node.events import GetResult, StoreResult
from node.ids import NodeId, key_id
from node.protocol import DhtProtocol
from node.sim.cluster import SimCluster, sim_config

DEFAULT_KEYS = 50


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]); 0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(s)))
    return float(s[rank - 1])


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": round(sum(values) / len(values), 3) if values else 0.0,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "max": float(max(values)) if values else 0.0,
    }


def _store_op(key: NodeId, data: bytes) -> Callable[[DhtProtocol, float], int]:
    return lambda p, now: p.store(key, data, now)


def _get_op(key: NodeId) -> Callable[[DhtProtocol, float], int]:
    return lambda p, now: p.get(key, now)


def run(
    nodes: int,
    lookups: int,
    churn: float = 0.0,
    seed: int = 0,
    wire: bool = False,
    loss: float = 0.0,
    keys: int = DEFAULT_KEYS,
) -> dict[str, Any]:
    """One experiment; returns the JSON-ready report."""
    cluster = SimCluster(seed=seed, config=sim_config(), loss=loss, wire=wire, keep_events=False)
    t0 = time.perf_counter()
    virtual_s = cluster.bootstrap(nodes)
    boot_wall_s = time.perf_counter() - t0
    members = cluster.alive()

    # -- stores ---------------------------------------------------------------------------------
    t1 = time.perf_counter()
    stored: dict[NodeId, bytes] = {}  # key id -> record signature (identity of the write)
    acks: list[int] = []
    stores_ok = 0
    for i in range(keys):
        kid = key_id(f"sim-key-{seed}-{i}")
        data = b"value-%d" % i
        res = cluster.run_op(cluster.rng.choice(members), _store_op(kid, data))
        assert isinstance(res, StoreResult)
        acks.append(res.acks)
        if res.ok:
            stores_ok += 1
            stored[kid] = res.record.sig
    store_wall_s = time.perf_counter() - t1

    # -- churn ----------------------------------------------------------------------------------
    killed = round(churn * len(members))
    for victim in cluster.rng.sample(members, killed):
        cluster.kill(victim.id)
    alive = cluster.alive()

    # -- lookups --------------------------------------------------------------------------------
    t2 = time.perf_counter()
    hops: list[float] = []
    requests: list[float] = []
    messages: list[float] = []
    found = 0
    key_list = list(stored)
    for _ in range(lookups if key_list else 0):
        kid = cluster.rng.choice(key_list)
        res = cluster.run_op(cluster.rng.choice(alive), _get_op(kid))
        assert isinstance(res, GetResult)
        if res.record is not None and res.record.sig == stored[kid]:
            found += 1
        hops.append(res.hops)
        requests.append(res.contacted)
        messages.append(2 * res.contacted - res.failed)
    lookup_wall_s = time.perf_counter() - t2
    done = len(hops)

    return {
        "nodes": nodes,
        "seed": seed,
        "wire": wire,
        "loss": loss,
        "config": {"k": cluster.config.k, "alpha": cluster.config.alpha},
        "bootstrap": {"virtual_s": round(virtual_s, 3), "wall_s": round(boot_wall_s, 3)},
        "stores": {
            "count": len(acks),
            "ok": stores_ok,
            "wall_s": round(store_wall_s, 3),
            "acks": {
                "min": min(acks) if acks else 0,
                "p50": percentile(acks, 50),
                "max": max(acks) if acks else 0,
                "histogram": {str(a): n for a, n in sorted(Counter(acks).items())},
            },
        },
        "churn": {"fraction": churn, "killed": killed, "alive": len(alive)},
        "lookups": {
            "count": done,
            "found": found,
            "get_success_rate": round(found / done, 4) if done else None,
            "hops": summary(hops),
            "requests_per_lookup": summary(requests),
            "messages_per_lookup": summary(messages),
            "wall_s": round(lookup_wall_s, 3),
        },
        "virtual_time_s": round(cluster.sched.now, 3),
        "events_executed": cluster.sched.executed,
        "messages_sent": sum(cluster.messages_sent.values()),
    }


def _int_at_least(lo: int) -> Any:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v

    return parse


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m node.sim",
        description="Simulate a DHT on virtual time and print one JSON report.",
    )
    p.add_argument("--nodes", type=_int_at_least(1), required=True, help="network size")
    p.add_argument("--lookups", type=_int_at_least(0), default=100, help="gets to run")
    p.add_argument("--churn", type=_fraction, default=0.0, help="fraction of nodes killed")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="simulation seed")
    p.add_argument("--keys", type=_int_at_least(1), default=DEFAULT_KEYS, help="keys stored")
    p.add_argument("--wire", action="store_true", help="encode/decode every message")
    p.add_argument("--loss", type=_fraction, default=0.0, help="message loss probability")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args.nodes, args.lookups, args.churn, args.seed, args.wire, args.loss, args.keys)
    json.dump(report, sys.stdout, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
