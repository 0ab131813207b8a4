"""What a cluster is made of: defaults, the supervisor configuration and member command lines.

Everything here is pure: it turns a ``SupervisorConfig`` plus allocated ports into ``MemberSpec``s.
The commands that run the node and the signaling server can be overridden (``DHT_NODE_COMMAND``,
``DHT_SIGNALING_COMMAND``, shell-quoted) so that tests can run fake members through the real
supervisor and launchers.
"""

from __future__ import annotations

import enum
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.launcher import MemberSpec, Role

HOST = "127.0.0.1"
DEFAULT_CLUSTER = "default"
DEFAULT_FRONT_PORT = 5555
DEFAULT_EVENTS_PORT = 5556
DEFAULT_METRICS_PORT = 9464
DEFAULT_SIGNALING_PORT = 3000
DEFAULT_UP_TIMEOUT_S = 120.0
FORMED_RT_MAX = 8  # a node is formed when rt size >= min(FORMED_RT_MAX, N - 1)
MAX_PEERS = 1000

NODE_COMMAND: tuple[str, ...] = ("python", "-m", "peer")
BROWSER_COMMAND: tuple[str, ...] = ("python", "-m", "supervisor.browser_peer")
WEB_DIR = Path(__file__).resolve().parents[1] / "web"
"""The browser peer's files, served by the signaling server when a cluster has browser peers."""
SIGNALING_COMMAND: tuple[str, ...] = ("python", "-m", "signaling")
NODE_COMMAND_ENV = "DHT_NODE_COMMAND"
SIGNALING_COMMAND_ENV = "DHT_SIGNALING_COMMAND"
STATE_DIR_ENV = "DHT_STATE_DIR"
ICE_SERVERS_ENV = "DHT_ICE_SERVERS"  # peer.cli reads it when no --ice-server flag is given
DOCKER_DATA_DIR = "/data"

_CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Backend(enum.StrEnum):
    PROCESS = "process"
    DOCKER = "docker"
    SWARM = "swarm"
    MEMORY = "memory"  # tests only


CONTAINER_BACKENDS = frozenset({Backend.DOCKER, Backend.SWARM})
SECRETS_DIR = "/run/secrets"
CURVE_SECRET = "curve.key"  # the cluster key pair, as a file name under SECRETS_DIR


def validate_cluster_name(name: str) -> str:
    if not _CLUSTER_NAME_RE.match(name):
        raise ValueError(
            f"invalid cluster name {name!r}: use letters, digits, '.', '_' or '-' (max 63)"
        )
    return name


def formed_threshold(peers: int) -> int:
    """The routing-table size every node must reach for the DHT to count as formed."""
    return max(0, min(FORMED_RT_MAX, peers - 1))


def command_from_env(env_name: str, default: Sequence[str]) -> tuple[str, ...]:
    raw = os.environ.get(env_name, "").strip()
    return tuple(shlex.split(raw)) if raw else tuple(default)


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    cluster: str
    peers: int
    backend: Backend
    state_root: Path
    front_port: int = DEFAULT_FRONT_PORT  # 0 = any free port
    events_port: int = DEFAULT_EVENTS_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    signaling_port: int = DEFAULT_SIGNALING_PORT
    node_command: tuple[str, ...] = NODE_COMMAND
    signaling_command: tuple[str, ...] = SIGNALING_COMMAND
    node_args: tuple[str, ...] = ()  # extra flags for every node (e.g. --stats-interval 1)
    env: Mapping[str, str] = field(default_factory=dict)
    browser_peers: int = 0  # headless-Chromium peers, numbered after the Python ones
    browser_command: tuple[str, ...] = BROWSER_COMMAND
    secure: bool = False  # CURVE on every control/event socket (always on for swarm)
    host: str = HOST  # where peers reach the signaling server (it binds there)
    ice_address: str = HOST  # the peers' --ice-address ("auto": the host's own addresses)
    ice_servers: tuple[str, ...] = ()  # STUN/TURN URLs handed to every peer (--ice-server)
    lab: LabOptions | None = None  # run the peers in a NAT lab (supervisor.natlab)

    def __post_init__(self) -> None:
        if self.browser_peers < 0:
            raise ValueError("browser peers must not be negative")
        if self.browser_peers and self.backend in CONTAINER_BACKENDS:
            raise ValueError("browser peers run with the process backend only (no chromium image)")
        if self.browser_peers and self.curved:
            raise ValueError("browser peers do not speak CURVE: no --secure with browser peers")
        if self.lab is not None and (self.backend is not Backend.PROCESS or self.browser_peers):
            raise ValueError("the NAT lab runs Python peers with the process backend only")

    @property
    def curved(self) -> bool:
        """True when the control plane uses CURVE (``control.curve``)."""
        return self.secure or self.backend is Backend.SWARM

    @property
    def curve_key_path(self) -> Path:
        """The cluster key pair on the supervisor's host."""
        return self.cluster_dir / CURVE_SECRET

    @property
    def cluster_dir(self) -> Path:
        return self.state_root / self.cluster


@dataclass(frozen=True, slots=True)
class LabOptions:
    """``--lab nat``: which NAT each peer is behind (``natlab.parse_kinds``), TURN or not."""

    nat: str = "eim"
    turn: bool = True


@dataclass(frozen=True, slots=True)
class Place:
    """Where a member runs when not in the root namespace: a NAT lab namespace, the address ICE
    gathers on there, and the STUN/TURN URLs (passed in the environment: they hold a secret)."""

    netns: str
    address: str
    ice_servers: tuple[str, ...] = ()


def in_place(place: Place | None, argv: Sequence[str]) -> list[str]:
    """``argv`` entered into ``place``'s namespace (``ip netns exec`` keeps the pid)."""
    if place is None:
        return list(argv)
    head = sys.executable if argv and argv[0] in ("python", "python3") else argv[0]
    return ["ip", "netns", "exec", place.netns, head, *argv[1:]]


def signaling_url(port: int, host: str = HOST) -> str:
    return f"ws://{host}:{port}"


def signaling_spec(config: SupervisorConfig, port: int, place: Place | None = None) -> MemberSpec:
    host = place.address if place is not None else config.host
    argv = [*config.signaling_command, "--host", host, "--port", str(port)]
    if config.browser_peers:
        argv += ["--web", str(WEB_DIR)]
    argv = in_place(place, argv)
    log_path = str(config.cluster_dir / "logs" / "signaling.log")
    return MemberSpec(
        cluster=config.cluster,
        role=Role.SIGNALING,
        index=0,
        argv=argv,
        env=dict(config.env),
        data_dir=None,
        log_path=log_path,
    )


NODES_DIR = "nodes"  # under the cluster's state dir: the process backend's peer data dirs


def node_data_dir(config: SupervisorConfig, index: int) -> str:
    if config.backend in CONTAINER_BACKENDS:
        return f"dht-{config.cluster}-{index}"  # a volume name
    return str(config.cluster_dir / NODES_DIR / str(index))


def _peer_spec(
    config: SupervisorConfig,
    index: int,
    command: Sequence[str],
    endpoints: tuple[str, str, str],
    data_arg: str,
    extra: Sequence[str],
    log_name: str,
    place: Place | None = None,
) -> MemberSpec:
    signaling, control, events = endpoints
    argv = [*command, "--signaling", signaling, "--data-dir", data_arg]
    if config.backend is not Backend.SWARM:  # swarm: from the task slot (supervisor.swarm)
        argv += ["--control", control, "--events", events]
    argv += extra
    secrets: dict[str, str] = {}
    if config.curved:
        secrets[CURVE_SECRET] = str(config.curve_key_path)
        in_member = (
            f"{SECRETS_DIR}/{CURVE_SECRET}"
            if config.backend in CONTAINER_BACKENDS
            else secrets[CURVE_SECRET]
        )
        argv += ["--curve-key", in_member]
    env = dict(config.env)
    if place is not None and place.ice_servers:
        env[ICE_SERVERS_ENV] = ",".join(place.ice_servers)
    return MemberSpec(
        cluster=config.cluster,
        role=Role.PEER,
        index=index,
        argv=in_place(place, argv),
        env=_peer_env(config, command, argv, env),
        data_dir=node_data_dir(config, index),
        log_path=str(config.cluster_dir / "logs" / log_name),
        secrets=secrets,
    )


def node_spec(
    config: SupervisorConfig,
    index: int,
    signaling: str,
    control: str,
    events: str,
    place: Place | None = None,
) -> MemberSpec:
    data_dir = node_data_dir(config, index)
    data_arg = DOCKER_DATA_DIR if config.backend in CONTAINER_BACKENDS else data_dir
    address = place.address if place is not None else config.ice_address
    servers = [arg for url in config.ice_servers for arg in ("--ice-server", url)]
    extra = ("--ice-address", address, *servers, *config.node_args)
    endpoints = (signaling, control, events)
    command = config.node_command
    log_name = f"node-{index}.log"
    return _peer_spec(config, index, command, endpoints, data_arg, extra, log_name, place)


def browser_spec(
    config: SupervisorConfig, index: int, signaling: str, control: str, events: str
) -> MemberSpec:
    """A browser peer (``supervisor.browser_peer``): a member like a node, another command."""
    endpoints = (signaling, control, events)
    data_dir = node_data_dir(config, index)
    command = config.browser_command
    return _peer_spec(config, index, command, endpoints, data_dir, (), f"browser-{index}.log")


def _peer_env(
    config: SupervisorConfig,
    command: Sequence[str],
    argv: Sequence[str],
    env: dict[str, str] | None = None,
) -> dict[str, str]:
    """The peer's extra environment. A local ``python -m peer`` also gets its options already
    resolved (``peer.serve.RESOLVED_ENV``), so it neither parses nor re-executes itself."""
    env = dict(config.env) if env is None else env
    if config.backend is Backend.PROCESS and tuple(command[-2:]) == NODE_COMMAND[-2:]:
        from peer.cli import resolve  # typer: only where nodes are really launched
        from peer.serve import RESOLVED_ENV

        options = resolve(argv[len(command) :], env)
        if options is not None:
            env[RESOLVED_ENV] = options.to_json()
    return env


def argv_value(argv: Sequence[str], flag: str) -> str | None:
    """The value following ``flag`` in ``argv`` (used by tests and fake members)."""
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[i + 1]
    return None
