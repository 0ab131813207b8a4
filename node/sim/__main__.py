"""Run one simulated experiment and print one JSON object.

    python -m node.sim --nodes N --lookups L --churn FRACTION --seed S [--wire] [--loss P]
        [--bootstrap join|oracle] [--settle] [--parallel P] [--latency SPEC] [--nat SHARE]
        [--hours H --churn-rate R | --lifetime SPEC] [--plot DIR]

Steps: bootstrap ``N`` nodes (``join``: the real join protocol; ``oracle``: tables filled from the
global view, ``node.sim.oracle`` — the report says which; ``--settle`` runs a joined network
through one round of bucket refresh, the settled state the oracle models), store ``--keys`` keys
from random nodes (store acks distribution), kill ``FRACTION`` of the nodes at random (churn), then
run ``L`` gets of stored keys from random live nodes (``--parallel`` of them in flight at once).
Per lookup: ``hops`` (depth of the answering peer), ``requests`` (FIND_VALUE requests sent) and
``messages`` (requests plus the replies received, ``2 * contacted - failed``). With ``--hours``, a
churn phase follows (``node.sim.churn``): node lifetimes from ``--lifetime`` (or the exponential of
``--churn-rate`` per hour), joins during the run, readability and table health sampled every
``--sample-every`` seconds. ``--plot DIR`` writes PNGs and ``plots.json`` (``node.sim.plots``). The
command line is typer through ``node.clikit`` like every entry point: bad arguments exit 2 with one
line on stderr."""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer

from node import clikit
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
from node.sim.scheduler import no_gc

DEFAULT_KEYS = 50
_T = TypeVar("_T")
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


@no_gc()
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
    settle: bool = False,
    parallel: int = 1,
) -> dict[str, Any]:
    """One experiment; returns the JSON-ready report. The cyclic GC is off throughout
    (``no_gc``): between the gets it would otherwise scan the whole network's state again and
    again (13 % of the time of 10,000 gets on 100,000 nodes)."""
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
        if settle:
            virtual_s += cluster.settle()
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
    for first in range(0, lookups if key_list else 0, parallel):
        # ``parallel`` gets in flight at once (a network serves many at a time); one at a time,
        # 10,000 gets span ~25 virtual minutes, and every idle node's maintenance with them
        batch = []
        for _ in range(min(parallel, lookups - first)):
            kid = cluster.rng.choice(key_list)
            node = cluster.rng.choice(alive)
            batch.append((kid, node, cluster.start(node, _get_op(kid))))
        for kid, node, op_id in batch:
            res = cluster.wait(node, op_id)
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
            "settled": bootstrap == "oracle" or settle,
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
            "parallel": parallel,
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


PROG = "python -m node.sim"


def _spec(parse: Callable[[str], _T]) -> Callable[[Any], _T | None]:
    """A ``node.clikit`` parser for a model spec (``node.sim.models``)."""

    def convert(value: Any) -> _T | None:
        if value is None:
            return None
        try:
            return parse(str(value))
        except SpecError as exc:
            raise typer.BadParameter(str(exc)) from None

    return convert


def _optional(parse: Callable[[Any], _T]) -> Callable[[Any], _T | None]:
    return lambda value: None if value is None else parse(value)


_LATENCY_HELP = "const:MS, uniform:LO:HI or measured (default uniform:5:50)"
_BOOTSTRAP_HELP = "join: the real join protocol; oracle: tables filled from the global view"


def _opt(help: str, parser: Callable[[Any], Any], metavar: str | None = None) -> Any:
    return typer.Option(help=help, parser=parser, metavar=metavar)


app = clikit.make_app(PROG, "Simulate a DHT on virtual time and print one JSON report.")


@app.command()
def simulate(
    nodes: Annotated[int, _opt("network size", clikit.positive_int)],
    lookups: Annotated[int, _opt("gets to run", clikit.int_range(0, what="an integer >= 0"))] = 100,
    churn: Annotated[float, _opt("fraction of nodes killed", clikit.fraction)] = 0.0,
    seed: Annotated[int, _opt("simulation seed", clikit.int_range(0, what="an integer >= 0"))] = 0,
    keys: Annotated[int, _opt("keys stored", clikit.positive_int)] = DEFAULT_KEYS,
    wire: Annotated[bool, typer.Option("--wire", help="encode/decode every message")] = False,
    loss: Annotated[float, _opt("message loss probability", clikit.fraction)] = 0.0,
    bootstrap: Annotated[str, _opt(_BOOTSTRAP_HELP, clikit.one_of(("join", "oracle")))] = "join",
    settle: Annotated[
        bool, typer.Option("--settle", help="after a join, one round of bucket refresh")
    ] = False,
    parallel: Annotated[int, _opt("gets in flight at once", clikit.positive_int)] = 1,
    latency: Annotated[
        LatencyModel | None, _opt(_LATENCY_HELP, _spec(parse_latency), "SPEC")
    ] = None,
    nat: Annotated[float, _opt("share of NAT-ed nodes", clikit.fraction)] = 0.0,
    hours: Annotated[
        float, _opt("simulated hours of churn after the lookups", clikit.non_negative_float)
    ] = 0.0,
    churn_rate: Annotated[
        float | None,
        _opt("share of nodes dying per hour (exponential lifetimes)", _optional(clikit.fraction)),
    ] = None,
    lifetime: Annotated[
        Lifetime | None, _opt("exp:MEAN_S or weibull:SHAPE:SCALE_S", _spec(parse_lifetime), "SPEC")
    ] = None,
    sample_every: Annotated[
        float, _opt("seconds between churn samples", clikit.positive_float)
    ] = 1800.0,
    plot: Annotated[
        str | None, typer.Option(metavar="DIR", help="write PNGs and plots.json here")
    ] = None,
) -> int:
    if lifetime is None and churn_rate:
        lifetime = churn_lifetime(churn_rate)
    report = run(
        nodes, lookups, churn, seed, wire, loss, keys, bootstrap=bootstrap, latency=latency,
        nat=nat, hours=hours, lifetime=lifetime, sample_every_s=sample_every, plot_dir=plot,
        settle=settle, parallel=parallel,
    )  # fmt: skip
    json.dump(report, sys.stdout, sort_keys=False)
    sys.stdout.write("\n")
    return clikit.EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator CLI on ``argv``; the exit code (2 for bad arguments, one line)."""
    return clikit.run(app, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
