"""The cluster state file, ``$DHT_STATE_DIR/<cluster>/cluster.json``: location, keys, read, write.

The one owner of the file: the supervisor writes it (``supervisor.state`` adds process liveness
and the supervisor's error type), ``dhtctl`` reads the endpoints from it. Written atomically
(temp file + ``os.replace``), so readers in other shells (``dhtctl``, ``orchestrate status``)
never see a torn file. The file is a plain JSON document whose keys are the fields of
``ClusterState``; unknown keys are ignored when reading. Imports only the standard library
(``dhtctl`` must start fast).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

STATE_DIR_ENV: Final = "DHT_STATE_DIR"
DEFAULT_STATE_DIR: Final = "~/.local/state/webrtc-dht"
STATE_FILE: Final = "cluster.json"


class StateFileError(Exception):
    """The state file exists but cannot be read or is malformed."""


def state_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding one sub-directory per cluster."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).expanduser()


def state_path(cluster: str, root: Path) -> Path:
    return root / cluster / STATE_FILE


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
    curve_key: str | None = None  # the cluster's CURVE key file when the control plane uses it
    nodes: tuple[NodeRecord, ...] = field(default_factory=tuple)

    def node(self, index: int) -> NodeRecord | None:
        for record in self.nodes:
            if record.index == index:
                return record
        return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = [asdict(n) for n in self.nodes]
        return data

    @classmethod
    def from_json(cls, data: Any) -> ClusterState:
        if not isinstance(data, dict):
            raise StateFileError("cluster state is not a JSON object")
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
            raise StateFileError(f"malformed cluster state: {exc}") from exc


def load_state(cluster: str, root: Path) -> ClusterState | None:
    """The state of ``cluster``, or ``None`` when there is no state file."""
    path = state_path(cluster, root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc}") from exc
    try:
        return ClusterState.from_json(json.loads(text))
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path} is not valid JSON: {exc}") from exc


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
