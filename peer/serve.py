"""Serve one node from already-validated options: what ``dht-node`` runs after parsing.

``peer.cli`` parses and validates the command line with typer, then re-executes the same
command line (same PID, same argv, so ``ps``, the supervisor and the image's health check see
``python -m peer --control ...`` as before) with the validated options in ``RESOLVED_ENV``.
``peer.__main__`` sees that variable and serves without importing typer: typer builds pydantic
adapters for every option, which would keep ~9 MiB resident in each of the cluster's node
processes for the sake of one parse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the parsing process (peer.cli) imports only this module's light part
    from node.config import Config
    from node.runtime import NodeSettings

RESOLVED_ENV: Final = "DHT_NODE_RESOLVED"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

log = logging.getLogger("node")


@dataclass(frozen=True, slots=True)
class Options:
    """Everything ``dht-node`` was told, validated (plain values: it travels as JSON)."""

    signaling: str | None
    data_dir: str
    ice_addresses: list[str]
    ice_servers: list[str]
    control: str
    events: str
    k: int
    alpha: int
    discovery_interval_s: float
    max_connections: int
    bootstrap_peers: int
    stats_interval_s: float
    log_level: str
    min_links: int = 8
    link_idle_s: float = 120.0
    overrides: dict[str, int | float] = field(default_factory=dict)  # node.tunables
    persist: bool = True  # SQLite in data_dir (node.persist); False: forget everything on exit
    curve_key: str | None = None  # the cluster's CURVE key file (control.curve)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Options:
        return cls(**json.loads(text))

    def config(self) -> Config:
        from node.config import Config

        return Config(
            k=self.k,
            alpha=self.alpha,
            discovery_interval_s=self.discovery_interval_s,
            **self.overrides,  # type: ignore[arg-type]
        )

    def settings(self) -> NodeSettings:
        from node.runtime import NodeSettings

        return NodeSettings(
            max_connections=self.max_connections,
            min_links=self.min_links,
            link_idle_s=self.link_idle_s,
            stats_interval_s=self.stats_interval_s,
            bootstrap_peers=self.bootstrap_peers,
        )


AUTO_ICE: Final = "auto"
LOOPBACK: Final = "127.0.0.1"


def ice_addresses(requested: list[str]) -> list[str]:
    """``requested`` with ``auto`` replaced by this host's own non-loopback IPv4 addresses
    (aioice's interface discovery; loopback when there are none): what a peer of a cluster that
    spans hosts gathers on (``supervisor.swarm.swarm_config``)."""
    out: list[str] = []
    for address in requested:
        if address != AUTO_ICE:
            out.append(address)
            continue
        from aioice.ice import get_host_addresses

        found = [a for a in get_host_addresses(use_ipv4=True, use_ipv6=False) if a != LOOPBACK]
        out += found or [LOOPBACK]
    return list(dict.fromkeys(out))


def serve(options: Options) -> int:
    """Configure logging and run the node; the exit code."""
    logging.basicConfig(
        level=options.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(run(options))


def serve_resolved(text: str) -> int:
    """``serve`` the options ``peer.cli`` put in ``RESOLVED_ENV``."""
    try:
        options = Options.from_json(text)
    except (ValueError, TypeError) as exc:
        print(f"dht-node: error: bad {RESOLVED_ENV}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return serve(options)


async def run(options: Options) -> int:
    """Run the node until SIGTERM/SIGINT or a ``shutdown`` command; the exit code."""
    from control.curve import CurveKeys, KeyFileError, check_exposure
    from node.identity import Identity
    from node.persist import SYNC_ENV, Persister
    from node.transport.webrtc import WebRTCTransport
    from peer.node import PeerNode

    try:
        curve = None if options.curve_key is None else CurveKeys.load(options.curve_key)
        check_exposure([options.control, options.events], curve)
    except (KeyFileError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    identity = Identity.load_or_create(options.data_dir)
    try:
        persister = (
            Persister(options.data_dir, os.environ.get(SYNC_ENV, "normal"))
            if options.persist
            else None
        )
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    node = PeerNode(
        identity,
        WebRTCTransport(ice_addresses(options.ice_addresses), options.ice_servers),
        config=options.config(),
        settings=options.settings(),
        signaling_url=options.signaling,
        control_endpoint=options.control,
        events_endpoint=options.events,
        persister=persister,
        curve=curve,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except Exception as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return EXIT_FAILED
    control = node.control
    log.info(
        "node %s ready: control %s events %s signaling %s",
        identity.node_id.hex(),
        control.control_endpoint if control else None,
        control.events_endpoint if control else None,
        options.signaling,
    )
    async with asyncio.TaskGroup() as tg:
        waiters = [tg.create_task(node.wait_stopped()), tg.create_task(stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    await node.stop()
    log.info("node %s stopped", identity.node_id.hex()[:8])
    return EXIT_OK
