"""``dht-node`` / ``python -m node``: run one DHT node until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from node.config import Config


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="dht-node", description="Run one webrtc-dht node.")
    p.add_argument(
        "--signaling",
        default=env("DHT_SIGNALING_URL", "ws://127.0.0.1:3000"),
        help="signaling server URL (env DHT_SIGNALING_URL); 'none' to run without one",
    )
    p.add_argument("--data-dir", default=env("DHT_DATA_DIR", "./.dht-node"), help="key directory")
    p.add_argument(
        "--ice-address",
        action="append",
        default=None,
        help="host address ICE gathers on (repeatable; env DHT_ICE_ADDRESSES; default 127.0.0.1)",
    )
    p.add_argument(
        "--ice-server",
        action="append",
        default=None,
        help="stun:/turn: URL (repeatable; env DHT_ICE_SERVERS; default none)",
    )
    p.add_argument("--control", default=env("DHT_CONTROL", "tcp://127.0.0.1:7000"))
    p.add_argument("--events", default=env("DHT_EVENTS", "tcp://127.0.0.1:7001"))
    p.add_argument("--k", type=_positive_int, default=env("DHT_K", "20"))
    p.add_argument("--alpha", type=_positive_int, default=env("DHT_ALPHA", "3"))
    p.add_argument(
        "--max-connections", type=_positive_int, default=env("DHT_MAX_CONNECTIONS", "64")
    )
    p.add_argument(
        "--bootstrap-peers",
        type=_positive_int,
        default=env("DHT_BOOTSTRAP_PEERS", "8"),
        help="how many peers from the signaling server to dial when joining",
    )
    p.add_argument(
        "--discovery-interval",
        type=_positive_float,
        default=env("DHT_DISCOVERY_INTERVAL", "15"),
        help="seconds between re-lookups of a joined topic (continuous discovery)",
    )
    p.add_argument("--stats-interval", type=_positive_float, default=env("DHT_STATS_INTERVAL", "5"))
    p.add_argument(
        "--log-level",
        default=env("DHT_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
    )
    return p


async def _run(args: argparse.Namespace) -> int:
    from node.identity import Identity
    from node.runtime import NodeRuntime, NodeSettings
    from node.transport.webrtc import WebRTCTransport

    ice_addresses = args.ice_address or _env_list("DHT_ICE_ADDRESSES") or ["127.0.0.1"]
    ice_servers = args.ice_server or _env_list("DHT_ICE_SERVERS") or []
    identity = Identity.load_or_create(args.data_dir)
    transport = WebRTCTransport(ice_addresses, ice_servers)
    signaling = None if args.signaling.lower() in ("", "none") else args.signaling
    runtime = NodeRuntime(
        identity,
        transport,
        Config(k=args.k, alpha=args.alpha, discovery_interval_s=args.discovery_interval),
        NodeSettings(
            signaling_url=signaling,
            control_endpoint=args.control,
            events_endpoint=args.events,
            max_connections=args.max_connections,
            stats_interval_s=args.stats_interval,
            bootstrap_peers=args.bootstrap_peers,
        ),
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
    except Exception as exc:
        logging.getLogger("node").error("cannot start: %s", exc)
        await runtime.stop()
        return 1
    logging.getLogger("node").info(
        "node %s ready: control %s events %s signaling %s",
        identity.node_id.hex(),
        runtime.control.control_endpoint if runtime.control else None,
        runtime.control.events_endpoint if runtime.control else None,
        signaling,
    )
    waiter = asyncio.ensure_future(runtime.wait_stopped())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for f in (waiter, stopper):
        f.cancel()
    await runtime.stop()
    logging.getLogger("node").info("node %s stopped", identity.node_id.hex()[:8])
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(asyncio.run(_run(args)))


if __name__ == "__main__":
    main()
