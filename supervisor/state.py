"""The cluster state file: ``$DHT_STATE_DIR/<cluster>/cluster.json``.

Written only by the supervisor (and removed by ``orchestrate.py down``), always atomically
(temp file + ``os.replace``), so readers in other shells (``dhtctl``, ``orchestrate status``)
never see a torn file. The file is a plain JSON document; unknown keys are ignored when reading.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from supervisor.errors import StateError
from supervisor.spec import STATE_DIR_ENV, validate_cluster_name

STATE_FILE = "cluster.json"
SUPERVISOR_LOG = "supervisor.log"


def state_root(override: str | os.PathLike[str] | None = None) -> Path:
    if override is not None:
        return Path(override)
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "webrtc-dht"


def cluster_dir(cluster: str, root: Path) -> Path:
    return root / validate_cluster_name(cluster)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    index: int
    control: str
    events: str
    id: str | None = None
    ref: str | None = None  # pid or container id
    data_dir: str | None = None
    log_path: str | None = None
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class ClusterState:
    cluster: str
    backend: str
    supervisor_pid: int | None
    front: str
    events: str
    metrics: str
    signaling: str
    status: str = "starting"  # starting | running | stopping | stopped
    peers: int = 0
    signaling_ref: str | None = None
    signaling_log: str | None = None
    signaling_restarts: int = 0
    supervisor_log: str | None = None
    nodes: tuple[NodeRecord, ...] = field(default_factory=tuple)

    def node(self, index: int) -> NodeRecord | None:
        for record in self.nodes:
            if record.index == index:
                return record
        return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = [asdict(n) for n in self.nodes]
        # The names dhtctl (control/cli.py) reads.
        data["front_endpoint"] = self.front
        data["event_endpoint"] = self.events
        return data

    @classmethod
    def from_json(cls, data: Any) -> ClusterState:
        if not isinstance(data, dict):
            raise StateError("cluster state is not a JSON object")
        try:
            nodes = tuple(
                NodeRecord(**{k: v for k, v in n.items() if k in NodeRecord.__dataclass_fields__})
                for n in data.get("nodes", [])
            )
            fields = {
                k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "nodes"
            }
            return cls(nodes=nodes, **fields)
        except (TypeError, AttributeError) as exc:
            raise StateError(f"malformed cluster state: {exc}") from exc


def state_path(cluster: str, root: Path) -> Path:
    return cluster_dir(cluster, root) / STATE_FILE


def load_state(cluster: str, root: Path) -> ClusterState | None:
    """The state of ``cluster``, or ``None`` when there is no state file."""
    path = state_path(cluster, root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc
    try:
        return ClusterState.from_json(json.loads(text))
    except json.JSONDecodeError as exc:
        raise StateError(f"{path} is not valid JSON: {exc}") from exc


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_state(state: ClusterState, root: Path) -> None:
    write_json_atomic(state_path(state.cluster, root), state.to_json())


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
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def supervisor_alive(state: ClusterState) -> bool:
    return state.status != "stopped" and pid_alive(state.supervisor_pid)
