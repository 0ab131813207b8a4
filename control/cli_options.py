"""What ``dhtctl`` and its shell share: the common options, where commands go, argument parsing.

Where commands go (first match wins):
  --endpoint URL  >  $DHTCTL_ENDPOINT  >  ``front`` of the cluster state file
  (``control.cluster_state``)  >  tcp://127.0.0.1:5555.
CURVE key (a secured cluster, ``control.curve``): $DHT_CURVE_KEY > ``curve_key`` of the state file
> none.
Events: (watch --endpoint | lookup --follow --events) > $DHTCTL_EVENTS > ``events`` of the
state file > tcp://127.0.0.1:5556. The cluster is --cluster > $DHTCTL_CLUSTER > ``default``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Final

from control.cluster_state import ClusterState, StateFileError, load_state, state_path, state_root
from control.curve import KEY_ENV, CurveKeys, KeyFileError
from control.errors import Unreachable
from control.schema import is_node_id_hex

DEFAULT_CONTROL_ENDPOINT: Final = "tcp://127.0.0.1:5555"
DEFAULT_EVENTS_ENDPOINT: Final = "tcp://127.0.0.1:5556"
DEFAULT_CLUSTER: Final = "default"
DEFAULT_TIMEOUT_S: Final = 10.0


class UsageFailure(Exception):
    """Bad input detected by dhtctl itself (exit 2)."""


@dataclass(frozen=True, slots=True)
class Options:
    node: str | None
    endpoint: str | None
    json: bool
    timeout: float
    debug: bool
    cluster: str | None

    @property
    def node_selector(self) -> int | str | None:
        if self.node is None:
            return None
        if self.node == "all":
            return "all"
        try:
            index = int(self.node)
        except ValueError:
            index = 0
        if index < 1:
            raise UsageFailure(f"--node must be a node index >= 1 or 'all', got {self.node!r}")
        return index


# -- endpoints ---------------------------------------------------------------------------------


def _cluster_state(opts: Options) -> ClusterState | None:
    name = opts.cluster or os.environ.get("DHTCTL_CLUSTER") or DEFAULT_CLUSTER
    root = state_root()
    try:
        state = load_state(name, root)
    except StateFileError as exc:
        raise Unreachable(str(exc)) from exc
    if state is None and opts.cluster is not None:
        path = state_path(name, root)
        raise Unreachable(f"no cluster {name!r} ({path} does not exist)")
    return state


def _check_endpoint(endpoint: str) -> str:
    if "://" not in endpoint:
        raise UsageFailure(f"bad endpoint {endpoint!r} (expected e.g. tcp://127.0.0.1:7000)")
    return endpoint


def control_endpoint(opts: Options) -> str:
    if opts.endpoint:
        return _check_endpoint(opts.endpoint)
    if env := os.environ.get("DHTCTL_ENDPOINT"):
        return _check_endpoint(env)
    state = _cluster_state(opts)
    return state.front if state is not None and state.front else DEFAULT_CONTROL_ENDPOINT


def events_endpoint(opts: Options, explicit: str | None) -> str:
    if explicit:
        return _check_endpoint(explicit)
    if env := os.environ.get("DHTCTL_EVENTS"):
        return _check_endpoint(env)
    state = _cluster_state(opts)
    return state.events if state is not None and state.events else DEFAULT_EVENTS_ENDPOINT


def curve_keys(opts: Options) -> CurveKeys | None:
    """The cluster's CURVE key pair when its control plane is secured, else None."""
    path = os.environ.get(KEY_ENV)
    if not path:
        state = _cluster_state(opts)
        path = state.curve_key if state is not None else None
    if not path:
        return None
    try:
        return CurveKeys.load(path)
    except KeyFileError as exc:
        raise Unreachable(str(exc)) from exc


# -- arguments ---------------------------------------------------------------------------------


def node_id_arg(text: str) -> str:
    if not is_node_id_hex(text):
        raise UsageFailure(f"bad node id {text!r}: expected 64 hex digits")
    return text.lower()


def meta_arg(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise UsageFailure(f"--meta is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise UsageFailure("--meta must be a JSON object")
    return meta
