"""Benchmark the WebRTC transport on 127.0.0.1 and print one JSON document.

    .venv/bin/python bench/webrtc_link.py [--connections 20] [--pings 1000] [--mbytes 20] [--plain]

* setup_ms: offer creation -> both sides open, p50/p90 over ``--connections`` dials (in-process).
* rtt_ms: ``--pings`` ping-pongs of 64 bytes, p50/p99, in-process and between two processes.
* throughput_mb_s: 1 KiB messages one way, in-process, with a window of in-flight messages.
* datagrams_per_round_trip: UDP datagrams both sides sent during the in-process ping-pongs,
  counted at the socket (``node.transport.wiretap``).
* ``--plain``: aiortc as shipped (no ``node.transport.sctp_adapter``), for before/after.

Everything is event-driven: each step awaits a future that a handler resolves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from node.transport.webrtc import WebRTCLink, WebRTCTransport  # noqa: E402
from node.transport.wiretap import Wiretap  # noqa: E402

OPEN_TIMEOUT_S = 10.0
#: False with ``--plain``: every transport here (and the echo child) runs aiortc unadapted.
ECONOMY = True
PING_BYTES = 64
THROUGHPUT_MESSAGE_BYTES = 1024
THROUGHPUT_WINDOW_MESSAGES = 1024

ECHO_CHILD = r"""
import asyncio, json, sys
from node.transport.webrtc import WebRTCTransport

async def main() -> None:
    loop = asyncio.get_running_loop()
    transport = WebRTCTransport(["127.0.0.1"], sctp_economy=sys.argv[1] == "1")
    offer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))["sdp"]
    answer = await transport.accept_offer(offer)
    print(json.dumps({"sdp": answer.sdp}), flush=True)
    link = await answer.wait_open(10.0)
    done = loop.create_future()
    link.set_handlers(link.send, lambda: done.set_result(None))
    await done
    await transport.close()

asyncio.run(main())
"""


def new_transport() -> WebRTCTransport:
    return WebRTCTransport(sctp_economy=ECONOMY)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


async def dial(a: WebRTCTransport, b: WebRTCTransport) -> tuple[WebRTCLink, WebRTCLink, float]:
    start = time.perf_counter()
    offer = await a.create_offer()
    answer = await b.accept_offer(offer.sdp)
    await offer.accept_answer(answer.sdp)
    link_a, link_b = await asyncio.gather(
        offer.wait_open(OPEN_TIMEOUT_S), answer.wait_open(OPEN_TIMEOUT_S)
    )
    return link_a, link_b, (time.perf_counter() - start) * 1000


async def ping_pong(link: WebRTCLink, count: int) -> list[float]:
    """``count`` sequential round trips on a link whose peer echoes; RTTs in ms."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bytes] | None = None

    def on_message(data: bytes) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(data)

    link.set_handlers(on_message, lambda: None)
    payload = b"p" * PING_BYTES
    rtts: list[float] = []
    for _ in range(count):
        waiter = loop.create_future()
        start = time.perf_counter()
        link.send(payload)
        echoed = await asyncio.wait_for(waiter, OPEN_TIMEOUT_S)
        rtts.append((time.perf_counter() - start) * 1000)
        assert echoed == payload
    return rtts


async def bench_setup(connections: int) -> dict[str, float]:
    async with new_transport() as a, new_transport() as b:
        times = []
        for _ in range(connections):
            link_a, link_b, ms = await dial(a, b)
            times.append(ms)
            link_a.close()
            link_b.close()
        return {"p50": percentile(times, 50), "p90": percentile(times, 90), "n": connections}


async def bench_rtt_in_process(pings: int) -> dict[str, float]:
    async with new_transport() as a, new_transport() as b:
        link_a, link_b, _ = await dial(a, b)
        link_b.set_handlers(link_b.send, lambda: None)
        taps = Wiretap.install(link_a), Wiretap.install(link_b)
        rtts = await ping_pong(link_a, pings)
        await asyncio.sleep(0.1)  # the last delayed SACK
        return {
            "p50": percentile(rtts, 50),
            "p99": percentile(rtts, 99),
            "n": pings,
            "datagrams_per_round_trip": round(sum(t.sent for t in taps) / pings, 3),
        }


async def bench_rtt_cross_process(pings: int) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ECHO_CHILD,
        "1" if ECONOMY else "0",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    try:
        async with new_transport() as transport:
            assert child.stdin is not None
            assert child.stdout is not None
            start = time.perf_counter()
            offer = await transport.create_offer()
            child.stdin.write(json.dumps({"sdp": offer.sdp}).encode() + b"\n")
            await child.stdin.drain()
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            await offer.accept_answer(json.loads(line)["sdp"])
            link = await offer.wait_open(OPEN_TIMEOUT_S)
            setup_ms = (time.perf_counter() - start) * 1000
            rtts = await ping_pong(link, pings)
            link.close()
            await asyncio.wait_for(child.wait(), 20)
        return {
            "p50": percentile(rtts, 50),
            "p99": percentile(rtts, 99),
            "n": pings,
            "setup_ms_incl_child_start": round(setup_ms, 1),
        }
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def bench_throughput(total_mbytes: float) -> dict[str, float]:
    total = int(total_mbytes * 1024 * 1024 / THROUGHPUT_MESSAGE_BYTES)
    loop = asyncio.get_running_loop()
    async with new_transport() as a, new_transport() as b:
        link_a, link_b, _ = await dial(a, b)
        received = 0
        target = 0
        waiter: asyncio.Future[None] = loop.create_future()

        def on_message(_data: bytes) -> None:
            nonlocal received
            received += 1
            if received >= target and not waiter.done():
                waiter.set_result(None)

        link_b.set_handlers(on_message, lambda: None)
        link_a.set_handlers(lambda _d: None, lambda: None)
        payload = b"t" * THROUGHPUT_MESSAGE_BYTES
        half = THROUGHPUT_WINDOW_MESSAGES // 2
        sent = 0
        start = time.perf_counter()
        while sent < total:
            batch = min(half if sent else THROUGHPUT_WINDOW_MESSAGES, total - sent)
            for _ in range(batch):
                link_a.send(payload)
            sent += batch
            # Keep at most one window in flight: wait until half of it has arrived.
            target = max(sent - half, 1) if sent < total else total
            if received < target:
                waiter = loop.create_future()
                await asyncio.wait_for(waiter, 30)
        elapsed = time.perf_counter() - start
        return {
            "mb_s": round(total * THROUGHPUT_MESSAGE_BYTES / elapsed / 1e6, 2),
            "messages": total,
            "message_bytes": THROUGHPUT_MESSAGE_BYTES,
            "send_queue_peak": link_a.send_queue_peak,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--mbytes", type=float, default=20.0)
    parser.add_argument("--no-cross-process", action="store_true")
    parser.add_argument("--plain", action="store_true", help="aiortc without the SCTP adapter")
    args = parser.parse_args()
    global ECONOMY
    ECONOMY = not args.plain
    result: dict[str, Any] = {
        "sctp": "plain" if args.plain else "adapted",
        "setup_ms": await bench_setup(args.connections),
        "rtt_ms_in_process": await bench_rtt_in_process(args.pings),
    }
    if not args.no_cross_process:
        result["rtt_ms_cross_process"] = await bench_rtt_cross_process(args.pings)
    result["throughput_1kib_in_process"] = await bench_throughput(args.mbytes)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
