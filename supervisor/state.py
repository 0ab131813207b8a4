"""The cluster state file as the supervisor sees it, and process liveness.

The file itself (location, keys, atomic write, reading) is ``control.cluster_state``, shared
with ``dhtctl``; this module validates cluster names, raises the supervisor's ``StateError``
and answers whether a supervisor is alive.
"""

from __future__ import annotations

import os
from pathlib import Path

from control import cluster_state
from control.cluster_state import (
    STATE_FILE,
    ClusterState,
    NodeRecord,
    StateFileError,
    save_state,
    state_root,
    write_json_atomic,
)
from supervisor.errors import StateError
from supervisor.spec import validate_cluster_name

SUPERVISOR_LOG = "supervisor.log"

__all__ = [
    "STATE_FILE",
    "SUPERVISOR_LOG",
    "ClusterState",
    "NodeRecord",
    "cluster_dir",
    "load_state",
    "pid_alive",
    "proc_running",
    "proc_stat_fields",
    "save_state",
    "state_path",
    "state_root",
    "supervisor_alive",
    "write_json_atomic",
]


def cluster_dir(cluster: str, root: Path) -> Path:
    return root / validate_cluster_name(cluster)


def state_path(cluster: str, root: Path) -> Path:
    return cluster_state.state_path(validate_cluster_name(cluster), root)


def load_state(cluster: str, root: Path) -> ClusterState | None:
    """The state of ``cluster``, or ``None`` when there is no state file."""
    try:
        return cluster_state.load_state(validate_cluster_name(cluster), root)
    except StateFileError as exc:
        raise StateError(str(exc)) from exc


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` names a live (non-zombie) process."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = proc_stat_fields(pid)
    return fields is None or fields[0] not in GONE_STATES


GONE_STATES = ("Z", "X")
"""The /proc states of a process that has exited (zombie, dead)."""


def proc_stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state letter first, field
    22 of the file at index 19); None when it cannot be read (no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def proc_running(pid: int) -> bool:
    """True when /proc shows ``pid`` as a process that has not exited (zombies have)."""
    fields = proc_stat_fields(pid)
    return fields is not None and fields[0] not in GONE_STATES


def supervisor_alive(state: ClusterState) -> bool:
    return state.status != "stopped" and pid_alive(state.supervisor_pid)
