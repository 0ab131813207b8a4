"""Run one simulated experiment and print one JSON object.

    python -m node.sim --nodes N --lookups L --churn FRACTION --seed S [--wire] [--loss P]
        [--bootstrap join|oracle] [--latency SPEC] [--nat SHARE]
        [--hours H --churn-rate R | --lifetime SPEC] [--plot DIR]

Steps: bootstrap ``N`` nodes (``join``: the real join protocol; ``oracle``: tables filled from
the global view, ``node.sim.oracle`` — the report says which), store ``--keys`` keys from random
nodes (store acks distribution), kill ``FRACTION`` of the nodes at random (churn), then run ``L``
gets of stored keys from random live nodes. Per lookup: ``hops`` (depth of the answering peer),
``requests`` (FIND_VALUE requests sent) and ``messages`` (requests plus the replies received,
``2 * contacted - failed``). With ``--hours``, a churn phase follows (``node.sim.churn``): node
lifetimes from ``--lifetime`` (or the exponential of ``--churn-rate`` per hour), joins during the
run, readability and table health sampled every ``--sample-every`` seconds. ``--plot DIR``
writes PNGs and ``plots.json`` (``node.sim.plots``). Bad arguments exit with status 2 (argparse).
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
from node.sim.churn import ChurnRun
from node.sim.cluster import SimCluster, sim_config
from node.sim.models import (
    LatencyModel,
    Lifetime,
    SpecError,
    churn_lifetime,
    parse_latency,
    parse_lifetime,
)
from node.sim.oracle import oracle_bootstrap

DEFAULT_KEYS = 50
DEFAULT_CHURN_RATE = 0.2  # per hour, when --hours is given without --lifetime or --churn-rate


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
    bootstrap: str = "join",
    latency: LatencyModel | None = None,
    nat: float = 0.0,
    hours: float = 0.0,
    lifetime: Lifetime | None = None,
    sample_every_s: float = 1800.0,
    plot_dir: str | None = None,
) -> dict[str, Any]:
    """One experiment; returns the JSON-ready report."""
    config = sim_config(refresh_interval_s=3600.0) if hours else sim_config()
    cluster = SimCluster(
        seed=seed, config=config, loss=loss, wire=wire, keep_events=False, latency=latency,
        nat_share=nat,
    )  # fmt: skip
    t0 = time.perf_counter()
    if bootstrap == "oracle":
        oracle_bootstrap(cluster, nodes)
        cluster.run_for(1.0)
        virtual_s = 1.0
    else:
        virtual_s = cluster.bootstrap(nodes)
    boot_wall_s = time.perf_counter() - t0
    members = cluster.alive()

    # -- stores ---------------------------------------------------------------------------------
    t1 = time.perf_counter()
    stored: dict[NodeId, bytes] = {}  # key id -> record signature (identity of the write)
    acks: list[int] = []
    stores_ok = 0
    records = {}
    publishers: set[NodeId] = set()
    for i in range(keys):
        kid = key_id(f"sim-key-{seed}-{i}")
        data = b"value-%d" % i
        writer = cluster.rng.choice(members)
        res = cluster.run_op(writer, _store_op(kid, data))
        assert isinstance(res, StoreResult)
        acks.append(res.acks)
        if res.ok:
            stores_ok += 1
            stored[kid] = res.record.sig
            records[kid] = res.record
            publishers.add(writer.id)
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
    latency_s: list[float] = []
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
        latency_s.append(res.duration_s)
    lookup_wall_s = time.perf_counter() - t2
    done = len(hops)

    churn_report: dict[str, Any] | None = None
    if hours > 0 and records:
        lt = lifetime or churn_lifetime(DEFAULT_CHURN_RATE)
        mean_s = getattr(lt, "mean_s", 3600.0)
        t3 = time.perf_counter()
        crun = ChurnRun(cluster, lt, mean_s, records, publishers)
        crun.run(hours * 3600.0, sample_every_s)
        churn_report = crun.report()
        churn_report["wall_s"] = round(time.perf_counter() - t3, 3)
        churn_report["gets"] = {
            "count": crun.gets.count,
            "found": crun.gets.found,
            "hops": summary(crun.gets.hops),
            "messages_per_lookup": summary(crun.gets.messages),
        }
    plots: list[str] = []
    if plot_dir is not None:
        from node.sim import plots as plotting

        figs = plotting.figures(
            {"hops": hops, "latency_s": latency_s, "messages": messages},
            churn_report["samples"] if churn_report else None,
        )
        plots = [str(p) for p in plotting.write(plot_dir, figs)]

    return {
        "nodes": nodes,
        "seed": seed,
        "wire": wire,
        "loss": loss,
        "nat": nat,
        "latency": type(cluster.net.latency).__name__,
        "config": {"k": cluster.config.k, "alpha": cluster.config.alpha},
        "bootstrap": {
            "method": bootstrap,
            "virtual_s": round(virtual_s, 3),
            "wall_s": round(boot_wall_s, 3),
        },
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
            "latency_s": summary(latency_s),
            "wall_s": round(lookup_wall_s, 3),
        },
        "churn_run": churn_report,
        "plots": plots,
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
    p.add_argument(
        "--bootstrap",
        choices=["join", "oracle"],
        default="join",
        help="real join protocol, or tables filled from the global view",
    )
    p.add_argument(
        "--latency",
        type=_spec(parse_latency),
        default=None,
        help="const:MS, uniform:LO:HI or measured (default uniform:5:50)",
    )
    p.add_argument("--nat", type=_fraction, default=0.0, help="share of NAT-ed nodes")
    p.add_argument(
        "--hours",
        type=_nonneg_float,
        default=0.0,
        help="simulated hours of churn after the lookups",
    )
    p.add_argument(
        "--churn-rate",
        type=_fraction,
        default=None,
        help="share of nodes dying per hour (exponential lifetimes)",
    )
    p.add_argument(
        "--lifetime",
        type=_spec(parse_lifetime),
        default=None,
        help="exp:MEAN_S or weibull:SHAPE:SCALE_S",
    )
    p.add_argument(
        "--sample-every", type=_positive_float, default=1800.0, help="seconds between churn samples"
    )
    p.add_argument("--plot", default=None, metavar="DIR", help="write PNGs and plots.json here")
    return p  # fmt: skip


def _spec(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except SpecError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _float_where(ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v) or not ok(v):
            raise argparse.ArgumentTypeError(f"must be {what}, got {v}")
        return v

    return parse


_nonneg_float = _float_where(lambda v: v >= 0, "non-negative")
_positive_float = _float_where(lambda v: v > 0, "positive")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    lifetime = args.lifetime
    if lifetime is None and args.churn_rate:
        lifetime = churn_lifetime(args.churn_rate)
    report = run(
        args.nodes, args.lookups, args.churn, args.seed, args.wire, args.loss, args.keys,
        bootstrap=args.bootstrap, latency=args.latency, nat=args.nat, hours=args.hours,
        lifetime=lifetime, sample_every_s=args.sample_every, plot_dir=args.plot,
    )  # fmt: skip
    json.dump(report, sys.stdout, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
