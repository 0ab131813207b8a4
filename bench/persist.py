"""Persistence benchmark: put latency with durable acks (SQLite, WAL, synchronous=FULL) vs none.

    python bench/persist.py --nodes 4 --puts 200 --concurrency 1 16

Runs in one process: ``--nodes`` nodes as ``dht-node`` assembles them (``PeerNode``) over the
in-memory transport with a real signaling server on 127.0.0.1, so the numbers isolate the
store path (no WebRTC). For each mode (persistence off, on) and each concurrency it stores
``--puts`` values from node 1 and prints put latency percentiles and the commits/rows the
persisters did (rows per commit > 1 = group commit at work). One JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.identity import Identity
from node.persist import SYNC_ENV, Persister
from node.transport.memory import MemoryHub, MemoryTransport
from peer.node import PeerNode
from signaling.server import SignalingServer


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


async def run_mode(
    persist: bool, nodes: int, puts: int, concurrencies: list[int]
) -> dict[str, Any]:
    server = SignalingServer("127.0.0.1", 0)
    await server.start()
    hub = MemoryHub()
    with tempfile.TemporaryDirectory(prefix="bench-persist-") as root:
        peers = [
            PeerNode(
                Identity.generate(),
                MemoryTransport(hub),
                signaling_url=server.url,
                persister=Persister(Path(root) / str(i), os.environ.get(SYNC_ENV, "normal"))
                if persist
                else None,
            )
            for i in range(nodes)
        ]
        try:
            for p in peers:
                await p.start()
            async with asyncio.timeout(60):
                while not all(len(p.runtime.core.table) >= nodes - 1 for p in peers):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            out: dict[str, Any] = {}
            for conc in concurrencies:
                samples: list[float] = []
                sem = asyncio.Semaphore(conc)

                async def put(
                    i: int,
                    conc: int = conc,
                    sem: asyncio.Semaphore = sem,
                    samples: list[float] = samples,
                ) -> None:
                    async with sem:
                        t0 = time.perf_counter()
                        r = await peers[0].runtime.store_value(f"k{conc}-{i}", os.urandom(256))
                        if r.ok:
                            samples.append((time.perf_counter() - t0) * 1000)

                t0 = time.perf_counter()
                await asyncio.gather(*(put(i) for i in range(puts)))
                wall = time.perf_counter() - t0
                out[f"concurrency_{conc}"] = {
                    "ok": len(samples),
                    "put_latency_ms": percentiles(samples),
                    "puts_per_s": round(len(samples) / wall, 1),
                }
            if persist:
                commits = sum(p.runtime.persister.commits for p in peers if p.runtime.persister)
                rows = sum(p.runtime.persister.rows for p in peers if p.runtime.persister)
                out["commits"] = commits
                out["rows_per_commit"] = round(rows / max(1, commits), 2)
            return out
        finally:
            for p in peers:
                await p.stop()
            await server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--puts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "nodes": args.nodes,
        "puts": args.puts,
        "load_1m": os.getloadavg()[0],
        "sync": os.environ.get(SYNC_ENV, "normal"),
    }
    # Alternate the modes (off, on, off, on) so warm-up and load drift do not favour one.
    for rep in range(args.repeat):
        for persist in (False, True):
            mode = f"persistence_{'on' if persist else 'off'}_{rep + 1}"
            result[mode] = await run_mode(persist, args.nodes, args.puts, args.concurrency)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
