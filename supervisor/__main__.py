"""``python -m supervisor run --cluster NAME --peers N --backend B ...``: the supervisor process.

Normally started (detached) by ``orchestrate.py up`` or ``Cluster.up``; runs until SIGTERM,
SIGINT or a ``cluster.shutdown`` request, then stops every member it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from supervisor.errors import SupervisorError
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
    validate_cluster_name,
)
from supervisor.state import state_root


def _peers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if not 1 <= value <= MAX_PEERS:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_PEERS}, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m supervisor")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a cluster in the foreground")
    run.add_argument("--cluster", default=DEFAULT_CLUSTER)
    run.add_argument("--peers", type=_peers, required=True)
    run.add_argument("--backend", choices=[b.value for b in Backend], default="process")
    run.add_argument("--state-dir", default=None)
    run.add_argument("--front-port", type=_port, default=DEFAULT_FRONT_PORT)
    run.add_argument("--events-port", type=_port, default=DEFAULT_EVENTS_PORT)
    run.add_argument("--metrics-port", type=_port, default=DEFAULT_METRICS_PORT)
    run.add_argument("--signaling-port", type=_port, default=DEFAULT_SIGNALING_PORT)
    run.add_argument("--node-arg", action="append", default=[], help="extra flag for every node")
    run.add_argument("--log-level", default="INFO")
    return parser


async def _run(config: SupervisorConfig) -> None:
    from supervisor.cluster import make_launcher
    from supervisor.supervisor import Supervisor

    launcher = make_launcher(config.backend, config.state_root)
    await Supervisor(config, launcher).run()


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(ns.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = SupervisorConfig(
            cluster=validate_cluster_name(ns.cluster),
            peers=ns.peers,
            backend=Backend(ns.backend),
            state_root=Path(state_root(ns.state_dir)),
            front_port=ns.front_port,
            events_port=ns.events_port,
            metrics_port=ns.metrics_port,
            signaling_port=ns.signaling_port,
            node_command=command_from_env(NODE_COMMAND_ENV, NODE_COMMAND),
            signaling_command=command_from_env(SIGNALING_COMMAND_ENV, SIGNALING_COMMAND),
            node_args=tuple(ns.node_arg),
        )
        asyncio.run(_run(config))
    except (SupervisorError, ValueError) as exc:
        print(f"supervisor: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
