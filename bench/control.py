"""Control-plane benchmark: ping round trips/s and ``dhtctl get`` end-to-end wall time.

Usage: ``python bench/control.py [--endpoint tcp://...] [--seconds 3] [--runs 10]``.
Without ``--endpoint`` a fake node is started in a subprocess (``python -m
tests.support.fake_node fake-node``) and stopped at the end. Prints one JSON document.
Targets: >= 3,000 round trips/s; ``dhtctl get`` p50 <= 400 ms (interpreter start included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control.client import ControlClient  # noqa: E402
from control.errors import RemoteError  # noqa: E402

TARGET_RTT_PER_S = 3000
TARGET_GET_MS = 400.0


def ping_rate(endpoint: str, seconds: float) -> dict[str, Any]:
    """Sequential round trips of a cheap command (``rt``) on one client."""
    with ControlClient(endpoint) as client:
        node_id = client.call("id")["id"]
        peer = None
        try:
            peer = client.call("peers")["peers"][0]["id"]
        except (IndexError, KeyError):
            peer = None
        cmd, args = ("ping", {"node_id": peer}) if peer else ("rt", {})
        for _ in range(50):  # warm up
            client.request(cmd, args)
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            client.request(cmd, args)
            count += 1
        elapsed = time.perf_counter() - started
    return {"node": node_id, "command": cmd, "round_trips": count, "per_s": count / elapsed}


def dhtctl_get(endpoint: str, runs: int) -> dict[str, Any]:
    with ControlClient(endpoint) as client:
        try:
            client.call("store", key="bench-key", value=b"bench-value")
        except RemoteError as exc:
            print(f"store failed ({exc}); measuring a not-found get", file=sys.stderr)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    samples_ms = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "control", "get", "bench-key", "--endpoint", endpoint],
            env=env,
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
        samples_ms.append((time.perf_counter() - started) * 1000)
    return {
        "runs": runs,
        "p50_ms": statistics.median(samples_ms),
        "min_ms": min(samples_ms),
        "max_ms": max(samples_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", help="a running control server (default: fake node)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    server = None
    endpoint = args.endpoint
    if endpoint is None:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_node", "fake-node"],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert server.stdout is not None
        endpoint = json.loads(server.stdout.readline())["control"]
    try:
        rate = ping_rate(endpoint, args.seconds)
        get = dhtctl_get(endpoint, args.runs)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "server": "fake" if server is not None else "external",
                "round_trips_per_s": round(rate["per_s"]),
                "round_trip_command": rate["command"],
                "round_trips_target_met": rate["per_s"] >= TARGET_RTT_PER_S,
                "dhtctl_get_p50_ms": round(get["p50_ms"], 1),
                "dhtctl_get_min_ms": round(get["min_ms"], 1),
                "dhtctl_get_max_ms": round(get["max_ms"], 1),
                "dhtctl_get_target_met": get["p50_ms"] <= TARGET_GET_MS,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
