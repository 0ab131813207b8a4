"""``dht-node`` / ``python -m peer``: run one DHT node until SIGTERM/SIGINT.

Configuration, highest precedence first: flags, environment (``DHT_*``), defaults — the table
is docs/interfaces.md. Exit codes (``node.clikit``): 0 clean shutdown, 1 the node could not
start (e.g. a control endpoint is taken), 2 bad usage or configuration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from node import clikit
from node.config import Config
from node.runtime import NodeSettings

PROG = "dht-node"
log = logging.getLogger("node")

app = clikit.make_app(PROG, "Run one webrtc-dht node until SIGTERM/SIGINT.")


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()] or None


@dataclass(frozen=True, slots=True)
class Options:
    signaling: str | None
    data_dir: str
    ice_addresses: list[str]
    ice_servers: list[str]
    control: str
    events: str
    config: Config
    settings: NodeSettings


def _opt(
    env: str | None, help: str, parser: Callable[[Any], Any] | None = None, metavar: str = ""
) -> Any:
    """A typer option read from ``env`` too, checked by a ``node.clikit`` parser."""
    return typer.Option(
        envvar=env, parser=parser, help=help, show_envvar=env is not None, metavar=metavar or None
    )


_ICE_ADDRESS_HELP = "host address ICE gathers on (repeatable; env DHT_ICE_ADDRESSES, a comma list)"
_ICE_SERVER_HELP = "stun:/turn: URL (repeatable; env DHT_ICE_SERVERS, a comma list)"
_BOOTSTRAP_HELP = "how many peers from the signaling server to dial when joining"
_DISCOVERY_HELP = "seconds between re-lookups of a joined topic (continuous discovery)"
_URL = "DHT_SIGNALING_URL"


@app.command()
def main_command(
    signaling: Annotated[str, _opt(_URL, "signaling server URL; 'none': no server")] = (
        "ws://127.0.0.1:3000"
    ),
    data_dir: Annotated[str, _opt("DHT_DATA_DIR", "key directory")] = "./.dht-node",
    ice_address: Annotated[list[str] | None, _opt(None, _ICE_ADDRESS_HELP, metavar="ADDR")] = None,
    ice_server: Annotated[list[str] | None, _opt(None, _ICE_SERVER_HELP, metavar="URL")] = None,
    control: Annotated[str, _opt("DHT_CONTROL", "control endpoint", clikit.endpoint)] = (
        "tcp://127.0.0.1:7000"
    ),
    events: Annotated[str, _opt("DHT_EVENTS", "events endpoint", clikit.endpoint)] = (
        "tcp://127.0.0.1:7001"
    ),
    k: Annotated[int, _opt("DHT_K", "bucket size", clikit.positive_int)] = 20,
    alpha: Annotated[int, _opt("DHT_ALPHA", "lookup parallelism", clikit.positive_int)] = 3,
    max_connections: Annotated[
        int, _opt("DHT_MAX_CONNECTIONS", "connection cap", clikit.positive_int)
    ] = 64,
    bootstrap_peers: Annotated[
        int, _opt("DHT_BOOTSTRAP_PEERS", _BOOTSTRAP_HELP, clikit.positive_int)
    ] = 8,
    discovery_interval: Annotated[
        float, _opt("DHT_DISCOVERY_INTERVAL", _DISCOVERY_HELP, clikit.positive_float)
    ] = 15.0,
    stats_interval: Annotated[
        float, _opt("DHT_STATS_INTERVAL", "seconds between node.stats", clikit.positive_float)
    ] = 5.0,
    log_level: Annotated[str, _opt("DHT_LOG_LEVEL", "DEBUG..ERROR", clikit.log_level)] = "INFO",
) -> int:
    logging.basicConfig(
        level=log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = Options(
        signaling=None if signaling.strip().lower() in ("", "none") else signaling,
        data_dir=data_dir,
        ice_addresses=ice_address or _env_list("DHT_ICE_ADDRESSES") or ["127.0.0.1"],
        ice_servers=ice_server or _env_list("DHT_ICE_SERVERS") or [],
        control=control,
        events=events,
        config=Config(k=k, alpha=alpha, discovery_interval_s=discovery_interval),
        settings=NodeSettings(
            max_connections=max_connections,
            stats_interval_s=stats_interval,
            bootstrap_peers=bootstrap_peers,
        ),
    )
    return asyncio.run(run(options))


async def run(options: Options) -> int:
    """Run the node until SIGTERM/SIGINT or a ``shutdown`` command; the exit code."""
    from node.identity import Identity
    from node.transport.webrtc import WebRTCTransport
    from peer.node import PeerNode

    identity = Identity.load_or_create(options.data_dir)
    node = PeerNode(
        identity,
        WebRTCTransport(options.ice_addresses, options.ice_servers),
        config=options.config,
        settings=options.settings,
        signaling_url=options.signaling,
        control_endpoint=options.control,
        events_endpoint=options.events,
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
        return clikit.EXIT_FAILED
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
    return clikit.EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(clikit.run(app, argv, prog=PROG))


if __name__ == "__main__":
    main()
