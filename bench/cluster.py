"""Cluster benchmark: bring-up time to formed, put/get latency on three paths, DHT messages per
operation, success rates, total RSS and CPU of the cluster processes.

    python bench/cluster.py --peers 25 --backend process --puts 200 --gets 1000 \
        --cluster bench-x --state-dir /tmp/bench-x

Latencies are reported three ways for the same operations:
- ``*_at_node_ms``: the node's own ``duration_ms`` (the operation inside the calling node);
- ``*_direct_ms``: wall time of the command sent straight to the node's control socket;
- ``*_supervisor_ms``: wall time through the supervisor's front endpoint.
``*_hop_ms`` are the per-operation differences (client wall time minus the node's duration): what
the control hop adds. Puts go through the supervisor; each get is sent once directly and once
through the supervisor (alternating which goes first), to random nodes.

Messages per operation are the delta of the nodes' ``messages_out`` counters (``stats`` on every
node) over the put phase and the get phase, divided by the number of operations; PING/PONG
(liveness) are reported apart. UDP datagrams are not counted here (see bench/webrtc_link.py).

Prints one JSON document. RSS/CPU are read from /proc (process backend: supervisor, signaling
and every peer; container backends: the containers' main processes on this machine).

Several backends (``--backend docker,swarm``) run one after the other in the same invocation and
print ``{"runs": [...]}``. ``--two-hosts`` (root) runs the swarm backend on two hosts made on this
machine (``tests.support.twohosts``: two network namespaces, a dockerd each, one swarm): the
benchmark re-runs itself inside host A's namespace, where the supervisor runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control.client import ControlClient
from control.errors import ControlError
from supervisor.cluster import Cluster, NodeHandle
from supervisor.errors import SupervisorError
from supervisor.front_client import state_curve

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


def container_pids(cluster: str) -> list[int]:
    """Host PIDs of the main processes of the cluster's containers on this engine (labelled
    ``dht.cluster``: Docker and Swarm backends alike; containers share the host PID view)."""
    import docker

    client = docker.from_env()
    try:
        rows = client.api.containers(filters={"label": f"dht.cluster={cluster}"})
        out = []
        for row in rows:
            try:
                pid = int(client.api.inspect_container(row["Id"])["State"]["Pid"])
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
    if state.backend != "process":
        pids += container_pids(c.name)
    if state.supervisor_pid:
        pids.append(state.supervisor_pid)
    return pids


LIVENESS_TYPES = ("PING", "PONG")


def messages_out(c: Cluster) -> Counter[str]:
    """Sum of every node's ``messages_out`` counters (by message type)."""
    total: Counter[str] = Counter()
    results = c.front.call("stats", {}, node="all", timeout_s=30.0)["results"]
    for outcome in results.values():
        if outcome.get("ok"):
            total.update(outcome["result"].get("messages_out", {}))
    return total


def per_op(before: Counter[str], after: Counter[str], ops: int) -> dict[str, Any]:
    delta = after - before
    dht = sum(n for t, n in delta.items() if t not in LIVENESS_TYPES)
    live = sum(n for t, n in delta.items() if t in LIVENESS_TYPES)
    return {
        "dht_messages_per_op": round(dht / ops, 2) if ops else None,
        "liveness_messages_per_op": round(live / ops, 2) if ops else None,
        "by_type_per_op": {t: round(n / ops, 2) for t, n in sorted(delta.items())} if ops else {},
    }


class Timed:
    """Latency samples of one path: client wall time and the hop (wall minus node duration)."""

    def __init__(self) -> None:
        self.wall_ms: list[float] = []
        self.hop_ms: list[float] = []
        self.node_ms: list[float] = []
        self.ok = 0

    def call(
        self, send: Callable[[], dict[str, Any]], check: Callable[[dict[str, Any]], bool]
    ) -> None:
        t = time.perf_counter()
        try:
            result = send()
        except (SupervisorError, ControlError):
            self.wall_ms.append((time.perf_counter() - t) * 1000)
            return
        wall = (time.perf_counter() - t) * 1000
        self.wall_ms.append(wall)
        node = float(result.get("duration_ms", 0.0))
        self.node_ms.append(node)
        self.hop_ms.append(wall - node)
        if check(result):
            self.ok += 1

    def report(self, name: str) -> dict[str, Any]:
        n = len(self.wall_ms)
        return {
            f"{name}_ms": percentiles(self.wall_ms),
            f"{name}_hop_ms": percentiles(self.hop_ms),
            f"{name}_success": round(self.ok / n, 4) if n else None,
        }


def run(
    peers: int, backend: str, puts: int, gets: int, timeout_s: float, name: str | None,
    state_dir: str | None,
) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(int(os.environ.get("BENCH_SEED", "1")))
    started = time.monotonic()
    with Cluster.up(
        peers=peers, backend=backend, timeout_s=timeout_s, name=name, state_dir=state_dir
    ) as c:
        bring_up_s = time.monotonic() - started
        pids = cluster_pids(c)
        curve = state_curve(c.state)
        direct = {
            n.index: ControlClient(n.control, timeout_s=10.0, curve=curve) for n in c.state.nodes
        }
        cpu_before = sum(cpu_s(p) for p in pids)
        wall_before = time.monotonic()
        keys: dict[str, bytes] = {}
        put = Timed()
        put_node_ms: list[float] = []
        msgs0 = messages_out(c)
        for i in range(puts):
            key, value = f"bench-{i}", secrets.token_bytes(100)
            node = c.node(rng.randint(1, peers))

            def store(node: NodeHandle = node, key: str = key, value: bytes = value) -> Any:
                return node.call("store", key=key, value=value)

            put.call(store, lambda r: True)
            if len(put.node_ms) > len(put_node_ms):
                keys[key] = value
                put_node_ms.append(put.node_ms[-1])
        msgs1 = messages_out(c)
        via_sup, via_direct = Timed(), Timed()
        names = list(keys)
        for i in range(gets if names else 0):
            key = rng.choice(names)
            index = rng.randint(1, peers)

            def check(r: dict[str, Any], key: str = key) -> bool:
                return bool(r.get("value") == keys[key])

            def sup(key: str = key, index: int = index) -> dict[str, Any]:
                return c.node(index).call("get", key=key)

            def dir_(key: str = key, index: int = index) -> dict[str, Any]:
                return direct[index].call("get", key=key)

            order = [(via_sup, sup), (via_direct, dir_)]
            for timed, send in order if i % 2 else order[::-1]:
                timed.call(send, check)
        msgs2 = messages_out(c)
        wall = time.monotonic() - wall_before
        cpu = sum(cpu_s(p) for p in pids) - cpu_before
        rss = sum(rss_kib(p) for p in pids)
        for client in direct.values():
            client.close()
        get_node_ms = via_sup.node_ms + via_direct.node_ms
        return {
            "peers": peers,
            "backend": backend,
            "load_avg": list(os.getloadavg()),
            "bring_up_s": round(bring_up_s, 2),
            "puts": puts,
            "put_success": round(len(keys) / puts, 4) if puts else None,
            "put_at_node_ms": percentiles(put_node_ms),
            **put.report("put_supervisor"),
            "put_messages": per_op(msgs0, msgs1, puts),
            "gets": len(via_sup.wall_ms),
            "get_at_node_ms": percentiles(get_node_ms),
            **via_direct.report("get_direct"),
            **via_sup.report("get_supervisor"),
            "get_messages": per_op(msgs1, msgs2, 2 * len(via_sup.wall_ms)),
            "rss_total_mib": round(rss / 1024, 1),
            "rss_per_peer_mib": round(rss / 1024 / max(1, len(pids)), 1),
            "cpu_s_during_ops": round(cpu, 2),
            "cpu_cores_during_ops": round(cpu / wall, 2) if wall > 0 else None,
            "processes": len(pids),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--peers", type=int, default=10)
    parser.add_argument(
        "--backend",
        default="process",
        help="process, docker, swarm or auto; a comma list runs each in turn",
    )
    parser.add_argument(
        "--two-hosts",
        action="store_true",
        help="swarm on two hosts made on this machine (root; tests.support.twohosts)",
    )
    parser.add_argument("--puts", type=int, default=200)
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--cluster", default=None, help="cluster name (default: a unique one)")
    parser.add_argument("--state-dir", default=None, help="state directory (default: a temp one)")
    ns = parser.parse_args()
    if ns.peers < 1 or ns.puts < 0 or ns.gets < 0:
        parser.error("--peers must be >= 1, --puts/--gets >= 0")
    backends = [b.strip() for b in ns.backend.split(",") if b.strip()]
    if any(b not in BACKENDS for b in backends) or not backends:
        parser.error(f"--backend: choose from {', '.join(BACKENDS)} (a comma list)")
    if ns.two_hosts:
        print(json.dumps(two_hosts(sys.argv[1:]), indent=2))
        return 0
    runs = [
        run(ns.peers, b, ns.puts, ns.gets, ns.timeout, ns.cluster, ns.state_dir) for b in backends
    ]
    print(json.dumps(runs[0] if len(runs) == 1 else {"runs": runs}, indent=2))
    return 0


BACKENDS = ("process", "docker", "swarm", "auto")


def two_hosts(argv: list[str]) -> dict[str, Any]:
    """Make the two-host swarm, run this benchmark (swarm backend) inside host A, remove it."""

    from tests.support.twohosts import TwoHosts

    inner = [a for a in argv if a != "--two-hosts"]
    for i, arg in enumerate(inner):
        if arg.startswith("--backend"):
            del inner[i : i + (1 if "=" in arg else 2)]
            break
    started = time.monotonic()
    with TwoHosts() as lab:
        made_s = time.monotonic() - started
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        done = lab.run_on_a(
            [sys.executable, str(Path(__file__).resolve()), "--backend", "swarm", *inner],
            env,
            timeout_s=1800,
        )
    if done.returncode != 0:
        raise SystemExit(f"the benchmark inside host A failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["two_hosts"] = True
    result["lab_setup_s"] = round(made_s, 1)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
