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
SIGNALING_COMMAND: tuple[str, ...] = ("python", "-m", "signaling")
NODE_COMMAND_ENV = "DHT_NODE_COMMAND"
SIGNALING_COMMAND_ENV = "DHT_SIGNALING_COMMAND"
STATE_DIR_ENV = "DHT_STATE_DIR"
DOCKER_DATA_DIR = "/data"

_CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Backend(enum.StrEnum):
    PROCESS = "process"
    DOCKER = "docker"
    MEMORY = "memory"  # tests only


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

    @property
    def cluster_dir(self) -> Path:
        return self.state_root / self.cluster


def signaling_url(port: int, host: str = HOST) -> str:
    return f"ws://{host}:{port}"


def signaling_spec(config: SupervisorConfig, port: int) -> MemberSpec:
    argv = [*config.signaling_command, "--host", HOST, "--port", str(port)]
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
    if config.backend is Backend.DOCKER:
        return f"dht-{config.cluster}-{index}"  # a volume name
    return str(config.cluster_dir / NODES_DIR / str(index))


def node_spec(
    config: SupervisorConfig, index: int, signaling: str, control: str, events: str
) -> MemberSpec:
    data_dir = node_data_dir(config, index)
    data_arg = DOCKER_DATA_DIR if config.backend is Backend.DOCKER else data_dir
    argv = [
        *config.node_command,
        "--signaling",
        signaling,
        "--data-dir",
        data_arg,
        "--control",
        control,
        "--events",
        events,
        "--ice-address",
        HOST,
        *config.node_args,
    ]
    return MemberSpec(
        cluster=config.cluster,
        role=Role.PEER,
        index=index,
        argv=argv,
        env=dict(config.env),
        data_dir=data_dir,
        log_path=str(config.cluster_dir / "logs" / f"node-{index}.log"),
    )


def argv_value(argv: Sequence[str], flag: str) -> str | None:
    """The value following ``flag`` in ``argv`` (used by tests and fake members)."""
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[i + 1]
    return None
