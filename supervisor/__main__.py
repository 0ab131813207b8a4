"""``python -m supervisor run --cluster NAME --peers N --backend B ...``: the supervisor process.

Normally started (detached) by ``orchestrate.py up`` or ``Cluster.up``; runs until SIGTERM,
SIGINT or a ``cluster.shutdown`` request, then stops every member it started. Exit codes: 0 clean
stop, 1 the cluster could not run, 2 usage.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from node import clikit
from supervisor.errors import SupervisorError
from supervisor.natlab import NAT_HELP, lab_options
from supervisor.spec import (
    DEFAULT_CLUSTER,
    DEFAULT_EVENTS_PORT,
    DEFAULT_FRONT_PORT,
    DEFAULT_METRICS_PORT,
    DEFAULT_SIGNALING_PORT,
    MAX_PEERS,
    NODE_COMMAND,
    NODE_COMMAND_ENV,
    SIGNALING_COMMAND,
    SIGNALING_COMMAND_ENV,
    Backend,
    SupervisorConfig,
    command_from_env,
)
from supervisor.state import state_root

PROG = "python -m supervisor"

app = clikit.make_app(PROG, "The webrtc-dht supervisor: runs one cluster and keeps it running.")

PortOpt = Annotated[int, typer.Option(parser=clikit.port, help="0 = any free port.")]


@app.callback()
def _group() -> None:
    """The webrtc-dht supervisor: runs one cluster and keeps it running."""


@app.command()
def run(
    peers: Annotated[
        int, typer.Option("--peers", parser=clikit.peer_count(MAX_PEERS), help="number of peers.")
    ],
    cluster: Annotated[
        str, typer.Option("--cluster", parser=clikit.cluster_name, help="cluster name.")
    ] = DEFAULT_CLUSTER,
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend", parser=clikit.enum_of(Backend), help="process, docker, swarm, memory."
        ),
    ] = Backend.PROCESS,
    state_dir: Annotated[
        str | None, typer.Option("--state-dir", help="state directory (default $DHT_STATE_DIR).")
    ] = None,
    front_port: PortOpt = DEFAULT_FRONT_PORT,
    events_port: PortOpt = DEFAULT_EVENTS_PORT,
    metrics_port: PortOpt = DEFAULT_METRICS_PORT,
    signaling_port: PortOpt = DEFAULT_SIGNALING_PORT,
    node_arg: Annotated[
        list[str] | None,
        typer.Option("--node-arg", metavar="FLAG", help="extra flag for every node (repeatable)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", parser=clikit.log_level, help="DEBUG..CRITICAL.")
    ] = "INFO",
    browser_peers: Annotated[
        int,
        typer.Option(
            "--browser-peers",
            parser=clikit.int_range(0, MAX_PEERS, what="a non-negative integer"),
            help="headless-Chromium peers, numbered after the Python ones (process backend).",
        ),
    ] = 0,
    ice_server: Annotated[
        list[str] | None,
        typer.Option("--ice-server", metavar="URL", help="STUN/TURN URL for every peer."),
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure", help="CURVE on every control and event socket (always on for swarm)."
        ),
    ] = False,
    lab: Annotated[
        str, typer.Option("--lab", help="'nat': run the peers in a NAT lab (needs root).")
    ] = "",
    nat: Annotated[str, typer.Option("--nat", help=NAT_HELP)] = "eim",
    turn: Annotated[
        bool, typer.Option("--turn/--no-turn", help="lab coturn relays (TURN).")
    ] = True,
) -> int:
    """Run a cluster in the foreground."""
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = SupervisorConfig(
            cluster=cluster,
            peers=peers,
            backend=backend,
            state_root=Path(state_root(state_dir)),
            front_port=front_port,
            events_port=events_port,
            metrics_port=metrics_port,
            signaling_port=signaling_port,
            node_command=command_from_env(NODE_COMMAND_ENV, NODE_COMMAND),
            signaling_command=command_from_env(SIGNALING_COMMAND_ENV, SIGNALING_COMMAND),
            node_args=tuple(node_arg or ()),
            browser_peers=browser_peers,
            secure=secure,
            ice_servers=tuple(ice_server or ()),
            lab=lab_options(lab, nat, turn, peers),
        )
        asyncio.run(_run(config))
    except (SupervisorError, ValueError) as exc:
        print(f"supervisor: error: {exc}", file=sys.stderr)
        return clikit.EXIT_FAILED
    return clikit.EXIT_OK


async def _run(config: SupervisorConfig) -> None:
    from supervisor.cluster import make_launcher
    from supervisor.supervisor import Supervisor
    from supervisor.swarm import SwarmLauncher, swarm_config

    launcher = make_launcher(config.backend, config.state_root)
    if isinstance(launcher, SwarmLauncher):
        config = swarm_config(config, launcher)
    await Supervisor(config, launcher).run()


def main(argv: list[str] | None = None) -> int:
    return clikit.run(app, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
