"""The Launcher seam: how the supervisor starts, stops and inspects cluster members.

A launcher knows nothing about the DHT. It runs *members* (the signaling server and the peers)
described by a ``MemberSpec`` and reports on them through a ``MemberHandle``. Implementations:
``processes.ProcessLauncher`` (local processes), ``containers.DockerLauncher`` (Docker SDK) and
``memory.MemoryLauncher`` (tests). All of them pass ``tests/unit/test_launcher_contract.py``.

Rules:
- Everything a launcher starts carries the cluster name, role and index so that ``find`` and
  ``remove_cluster`` can recover the whole cluster from another process (labels for containers,
  a state file for processes).
- ``start`` returns once the member has been started (not once it is healthy); health is the
  supervisor's business, checked through the control socket.
- Methods raise ``supervisor.errors.LaunchError`` with one clear message for anything the
  backend refuses (engine unreachable, image missing, port taken, out of disk).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Role(enum.StrEnum):
    SIGNALING = "signaling"
    PEER = "peer"


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """What to run. ``argv`` is the command *inside* the runtime environment, e.g.
    ``["python", "-m", "node", "--control", "tcp://127.0.0.1:7003", ...]``; the process launcher
    replaces a leading ``"python"`` with the current interpreter."""

    cluster: str
    role: Role
    index: int  # peers 1..N; the signaling server is 0
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    data_dir: str | None = None  # a host path (processes) or a volume name (docker)
    log_path: str | None = None  # processes: where stdout/stderr go
    secrets: Mapping[str, str] = field(default_factory=dict)
    """File name -> host path of a secret the member reads (the cluster's CURVE key): containers
    see it as ``/run/secrets/<name>`` (a Swarm secret, or a read-only bind mount); processes
    are given the host path itself."""


@dataclass(frozen=True, slots=True)
class MemberHandle:
    cluster: str
    role: Role
    index: int
    ref: str  # pid for processes, container id for docker, a token for memory


class MemberState(enum.StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    MISSING = "missing"


class Launcher(Protocol):
    name: str

    def start(self, spec: MemberSpec) -> MemberHandle: ...

    def state(self, handle: MemberHandle) -> MemberState: ...

    def exit_code(self, handle: MemberHandle) -> int | None: ...

    def stop(self, handle: MemberHandle, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; a missing member is not an error."""
        ...

    def kill(self, handle: MemberHandle) -> None:
        """SIGKILL now (tests use it to simulate a crash)."""
        ...

    def logs(
        self, handle: MemberHandle, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]: ...

    def find(self, cluster: str) -> list[MemberHandle]:
        """Every member of ``cluster`` this backend still has (running or not)."""
        ...

    def remove_cluster(self, cluster: str, purge: bool = True) -> None:
        """Stop and remove every member of ``cluster`` and, with ``purge``, every volume/data
        dir; idempotent."""
        ...
