"""The Docker Swarm backend: ``SwarmLauncher`` (the ``Launcher`` protocol) over Swarm services.

The supervisor runs on a swarm *manager* and drives it through the Docker SDK (the engine of
``DOCKER_HOST``). Theory of operation:

- **Services.** A cluster is two services, ``dht-<cluster>-signaling`` (one replica, placed on
  the supervisor's own swarm node, so its URL is that node's address) and ``dht-<cluster>-peers``
  (replicated). Peer *i* is the peer service's task **slot** *i*: ``start`` of peer *i* raises the
  replica count to at least *i* and waits until slot *i* has a task placed on a node; ``stop``
  of peer *i* lowers it to *i - 1* (the supervisor scales down from the top). Swarm removes the
  highest slots first when every task runs on one node; across nodes it may balance instead
  (docs/multi-host.md).
- **Host networking, ports from the slot.** Tasks attach to the swarm ``host`` network (WebRTC
  needs the hosts' addresses). Every task gets the same command, so a peer's ports derive from its
  slot: control ``PORT_BASE + 2 * slot``, events ``PORT_BASE + 2 * slot + 1`` (a ``sh`` wrapper
  computes them from ``{{.Task.Slot}}``), bound on every interface; the control plane is
  therefore always CURVE (the key is a Swarm secret, ``/run/secrets/curve.key``).
- **Identity.** Each slot mounts the named volume ``dht-<cluster>-<slot>`` (a templated mount):
  a task that Swarm restarts on the same node finds its key again, so the same node ID. Volumes
  are local to a swarm node: a slot that moves to another node starts with a new identity.
- **Restarts are Swarm's** (restart condition ``any``): ``state`` is RUNNING while the slot has
  a task Swarm wants running; ``restart_count`` counts the slot's tasks beyond the first, which
  ``status`` shows. ``endpoints`` says where a slot's task runs now (the node's address), so the
  supervisor follows a peer Swarm moved.
- **Labels** ``dht.cluster`` / ``dht.role`` / ``dht.managed-by`` on services, containers,
  secrets and volumes; ``remove_cluster`` removes the services, waits for their containers on
  this engine, then removes the secrets and this engine's volumes. The swarm itself is left as
  it was.
- ``kill`` SIGKILLs the slot's container through this engine (the task must run on this swarm
  node); Swarm sees a failed task and starts a new one in the same slot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from supervisor.containers import (
    DATA_MOUNT,
    DEFAULT_IMAGE,
    LABEL_CLUSTER,
    LABEL_INDEX,
    LABEL_MANAGED,
    LABEL_ROLE,
    MANAGED_BY,
    SECRETS_DIR,
    EngineLauncher,
    _first_line,
    engine_errors,
    log_lines,
)
from supervisor.errors import LaunchError
from supervisor.launcher import MemberHandle, MemberSpec, MemberState, Role
from supervisor.spec import SupervisorConfig

PORT_BASE_ENV: Final = "DHT_SWARM_PORT_BASE"
DEFAULT_PORT_BASE: Final = 27000
SLOT_ENV: Final = "DHT_SLOT"
PORT_ENV: Final = "DHT_PORT_BASE"
PLACE_TIMEOUT_S: Final = 60.0
REMOVE_TIMEOUT_S: Final = 60.0
TASKS_CACHE_S: Final = 0.5
NODES_CACHE_S: Final = 2.0
POLL_S: Final = 0.2
RESTART_DELAY_NS: Final = 1_000_000_000
STOP_GRACE_NS: Final = 10_000_000_000
SECRET_MODE: Final = 0o400
UNREACHABLE_HINT: Final = "the swarm backend needs a swarm manager's engine (DOCKER_HOST)"
NOT_MANAGER_HINT: Final = (
    "make it one with `docker swarm init --advertise-addr ADDR` (or run the supervisor on a "
    "manager of an existing swarm), or use --backend docker|process"
)
WRAPPER: Final = (
    f'export DHT_CONTROL="tcp://0.0.0.0:$(( {PORT_ENV} + 2 * {SLOT_ENV} ))" '
    f'DHT_EVENTS="tcp://0.0.0.0:$(( {PORT_ENV} + 2 * {SLOT_ENV} + 1 ))"; exec "$@"'
)
"""The peer service's ``sh -c`` program: the slot's control and event endpoints, then the node."""
_WANTED_STATES: Final = frozenset({"running", "ready"})
"""Desired states of a task Swarm means to run ("ready": a restart waiting for its delay)."""
_LIVE_TASK_STATES: Final = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "starting", "running"}
)


def service_name(cluster: str, role: Role) -> str:
    return f"dht-{cluster}-{'peers' if role is Role.PEER else 'signaling'}"


def volume_template(cluster: str) -> str:
    """The per-slot volume name, as a Swarm template (``dht-<cluster>-<slot>``)."""
    return f"dht-{cluster}-{{{{.Task.Slot}}}}"


def peer_ports(base: int, slot: int) -> tuple[int, int]:
    """(control, events) ports of slot ``slot``: what ``WRAPPER`` computes inside the task."""
    return base + 2 * slot, base + 2 * slot + 1


def port_base_from_env(environ: Mapping[str, str] = os.environ) -> int:
    raw = environ.get(PORT_BASE_ENV, "").strip()
    if not raw:
        return DEFAULT_PORT_BASE
    if not raw.isdigit() or not 1024 <= int(raw) <= 60000:
        raise ValueError(f"${PORT_BASE_ENV} must be a port number in 1024..60000, got {raw!r}")
    return int(raw)


def _labels(cluster: str, role: Role | None = None) -> dict[str, str]:
    labels = {LABEL_CLUSTER: cluster, LABEL_MANAGED: MANAGED_BY}
    if role is not None:
        labels[LABEL_ROLE] = str(role)
    return labels


def _ref(cluster: str, role: Role, index: int) -> str:
    return f"{service_name(cluster, role)}#{index}"


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class SwarmLauncher(EngineLauncher):
    """Runs cluster members as Swarm services of ``image`` (see the module docstring)."""

    name = "swarm"

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        client: Any | None = None,
        port_base: int | None = None,
    ) -> None:
        self.port_base = port_base_from_env() if port_base is None else port_base
        super().__init__(image, client, UNREACHABLE_HINT)
        with engine_errors("asking the engine for its swarm state"):
            swarm = dict(self._api.info().get("Swarm") or {})
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            state = swarm.get("LocalNodeState") or "unknown"
            raise LaunchError(
                f"this Docker engine is not a swarm manager (swarm state: {state}); "
                + NOT_MANAGER_HINT
            )
        self.node_id = str(swarm.get("NodeID", ""))
        self._lock = threading.Lock()
        self._scaling = threading.Lock()
        self._tasks_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._seen: dict[str, set[str]] = {}  # member ref -> every task id seen in its slot
        self._nodes_cache: tuple[float, list[dict[str, Any]]] | None = None

    # -- the swarm ---------------------------------------------------------------------------

    def _nodes(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            if self._nodes_cache is not None and now - self._nodes_cache[0] < NODES_CACHE_S:
                return self._nodes_cache[1]
        with engine_errors("listing swarm nodes"):
            nodes = list(self._api.nodes())
        with self._lock:
            self._nodes_cache = (now, nodes)
        return nodes

    def node_addresses(self) -> dict[str, str]:
        """Swarm node id -> the address it advertises (``Status.Addr``)."""
        return {str(n["ID"]): str((n.get("Status") or {}).get("Addr", "")) for n in self._nodes()}

    def _ready_nodes(self) -> set[str]:
        return {
            str(n["ID"]) for n in self._nodes() if (n.get("Status") or {}).get("State") == "ready"
        }

    def node_name(self, node_id: str) -> str:
        """The swarm node's hostname (its id when unknown)."""
        for node in self._nodes():
            if node["ID"] == node_id:
                return str((node.get("Description") or {}).get("Hostname") or node_id)
        return node_id

    def manager_address(self) -> str:
        """The address of the swarm node the supervisor runs on (where signaling runs)."""
        return self.node_addresses().get(self.node_id) or "127.0.0.1"

    # -- starting ----------------------------------------------------------------------------

    def start(self, spec: MemberSpec) -> MemberHandle:
        name = service_name(spec.cluster, spec.role)
        if spec.role is Role.SIGNALING:
            self._remove_service(name)
            self._wait_containers_gone(spec.cluster, spec.role)
            self._create_service(spec, name, replicas=1)
        else:
            with self._scaling:
                service = self._service(name)
                if service is None:
                    self._create_service(spec, name, replicas=spec.index)
                elif _replicas(service) < spec.index:
                    self._set_replicas(service, spec.index)
        ref = _ref(spec.cluster, spec.role, spec.index)
        self._wait_placed(name, ref, spec.index)
        return MemberHandle(spec.cluster, spec.role, spec.index, ref=ref)

    def _create_service(self, spec: MemberSpec, name: str, replicas: int) -> None:
        from docker.types import (
            ContainerSpec,
            Healthcheck,
            Mount,
            NetworkAttachmentConfig,
            Placement,
            RestartPolicy,
            SecretReference,
            ServiceMode,
            TaskTemplate,
        )

        labels = _labels(spec.cluster, spec.role)
        secrets = [
            SecretReference(
                self._secret(spec.cluster, file_name, Path(host_path)),
                self._secret_name(spec.cluster, file_name, Path(host_path)),
                filename=file_name,
                mode=SECRET_MODE,
            )
            for file_name, host_path in spec.secrets.items()
        ]
        env = [f"{k}={v}" for k, v in spec.env.items()]
        mounts = []
        if spec.role is Role.PEER:
            command = ["sh", "-c", WRAPPER, "sh", *spec.argv]
            env += [f"{SLOT_ENV}={{{{.Task.Slot}}}}", f"{PORT_ENV}={self.port_base}"]
            mounts.append(
                Mount(
                    target=DATA_MOUNT,
                    source=volume_template(spec.cluster),
                    type="volume",
                    labels=labels,
                )
            )
            placement = Placement(preferences=[("spread", "node.id")])
        else:
            command = list(spec.argv)
            placement = Placement(constraints=[f"node.id=={self.node_id}"])
        container = ContainerSpec(
            self.image,
            command=command,
            env=env,
            mounts=mounts,
            secrets=secrets,
            labels=labels,
            healthcheck=Healthcheck(test=["NONE"]),  # the supervisor checks health itself
            stop_grace_period=STOP_GRACE_NS,
        )
        with engine_errors(f"creating service {name}", image=self.image):
            self._api.create_service(
                TaskTemplate(
                    container,
                    restart_policy=RestartPolicy(condition="any", delay=RESTART_DELAY_NS),
                    placement=placement,
                    networks=[NetworkAttachmentConfig("host")],
                ),
                name=name,
                labels=labels,
                mode=ServiceMode("replicated", replicas=replicas),
                networks=None,
            )
        with self._lock:
            self._tasks_cache.pop(name, None)

    def _secret_name(self, cluster: str, file_name: str, path: Path) -> str:
        digest = hashlib.sha256(self._read_secret(path)).hexdigest()[:12]
        return f"dht-{cluster}-{file_name.replace('.', '-')}-{digest}"

    @staticmethod
    def _read_secret(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise LaunchError(f"cannot read the secret file {path}: {exc}") from exc

    def _secret(self, cluster: str, file_name: str, path: Path) -> str:
        """The id of the Swarm secret holding ``path`` (created when missing)."""
        name = self._secret_name(cluster, file_name, path)
        with engine_errors(f"creating secret {name}"):
            for existing in self._api.secrets(filters={"name": name}):
                if existing["Spec"]["Name"] == name:
                    return str(existing["ID"])
            created = self._api.create_secret(
                name, self._read_secret(path), labels=_labels(cluster)
            )
        return str(created["ID"])

    def _set_replicas(self, service: dict[str, Any], replicas: int) -> None:
        from docker.types import ServiceMode

        spec = service["Spec"]
        name = spec["Name"]
        with engine_errors(f"scaling {name} to {replicas}"):
            # The spec as it is but for the mode (the SDK's fetch_current_spec adds empty
            # fields, which Swarm takes for a new spec and rolls out to every task).
            self._api.update_service(
                service["ID"],
                version=service["Version"]["Index"],
                task_template=spec["TaskTemplate"],
                name=name,
                labels=spec.get("Labels"),
                mode=ServiceMode("replicated", replicas=replicas),
                update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"),
            )
        with self._lock:
            self._tasks_cache.pop(name, None)

    def _wait_placed(self, name: str, ref: str, slot: int) -> None:
        deadline = time.monotonic() + PLACE_TIMEOUT_S
        while True:
            task = self._current_task(name, slot, fresh=True)
            if task is not None and task.get("NodeID"):
                self._note(ref, task)
                return
            if time.monotonic() >= deadline:
                raise LaunchError(
                    f"slot {slot} of service {name} was not placed on a swarm node within "
                    f"{PLACE_TIMEOUT_S:g} s (`docker service ps {name}` says why)"
                )
            time.sleep(POLL_S)

    # -- inspecting --------------------------------------------------------------------------

    def _service(self, name: str) -> dict[str, Any] | None:
        from docker.errors import NotFound

        try:
            with engine_errors(f"inspecting service {name}", NotFound):
                return dict(self._api.inspect_service(name))
        except NotFound:
            return None

    def _tasks(self, name: str, fresh: bool = False) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            cached = self._tasks_cache.get(name)
        if cached is not None and not fresh and now - cached[0] < TASKS_CACHE_S:
            return cached[1]
        with engine_errors(f"listing the tasks of {name}"):
            tasks = list(self._api.tasks(filters={"service": name}))
        with self._lock:
            self._tasks_cache[name] = (now, tasks)
        return tasks

    def _slot_tasks(self, name: str, slot: int, fresh: bool = False) -> list[dict[str, Any]]:
        """The tasks of ``slot`` (0: every task, for the one-replica signaling service)."""
        tasks = self._tasks(name, fresh)
        return tasks if slot == 0 else [t for t in tasks if t.get("Slot") == slot]

    def _current_task(self, name: str, slot: int, fresh: bool = False) -> dict[str, Any] | None:
        """The slot's newest task that Swarm wants running (or to run after a restart delay),
        else None."""
        wanted = [
            t
            for t in self._slot_tasks(name, slot, fresh)
            if t.get("DesiredState") in _WANTED_STATES
        ]
        return max(wanted, key=lambda t: t.get("CreatedAt", ""), default=None)

    def _latest_task(self, handle: MemberHandle) -> dict[str, Any] | None:
        tasks = self._slot_tasks(service_name(handle.cluster, handle.role), handle.index)
        return max(tasks, key=lambda t: t.get("CreatedAt", ""), default=None)

    def _note(self, ref: str, task: dict[str, Any]) -> None:
        with self._lock:
            self._seen.setdefault(ref, set()).add(str(task["ID"]))

    def state(self, handle: MemberHandle) -> MemberState:
        name = service_name(handle.cluster, handle.role)
        task = self._current_task(name, handle.index)
        if task is not None:
            self._note(handle.ref, task)
            return MemberState.RUNNING
        return MemberState.EXITED if self._latest_task(handle) is not None else MemberState.MISSING

    def exit_code(self, handle: MemberHandle) -> int | None:
        task = self._latest_task(handle)
        if task is None:
            return None
        status = task.get("Status") or {}
        if status.get("State") in _LIVE_TASK_STATES:
            return None
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        return int(code) if isinstance(code, int) else None

    def restart_count(self, handle: MemberHandle) -> int:
        """How many times Swarm replaced the slot's task since this launcher first saw it."""
        with self._lock:
            return max(0, len(self._seen.get(handle.ref, ())) - 1)

    def endpoints(self, handle: MemberHandle) -> tuple[str, str, str] | None:
        """(control, events, swarm node hostname) of the peer's current task; None when it is
        not placed."""
        task = self._current_task(service_name(handle.cluster, handle.role), handle.index)
        if task is None or not task.get("NodeID"):
            return None
        node = str(task["NodeID"])
        address = self.node_addresses().get(node) or ""
        if not address:
            return None
        control, events = peer_ports(self.port_base, handle.index)
        return f"tcp://{address}:{control}", f"tcp://{address}:{events}", self.node_name(node)

    def logs(
        self, handle: MemberHandle, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        """The member's output: its service's log lines from its slot's tasks."""
        name = service_name(handle.cluster, handle.role)
        with engine_errors(f"reading logs of {handle.role} {handle.index}"):
            chunks = self._api.service_logs(
                name,
                details=True,
                follow=follow,
                stdout=True,
                stderr=True,
                tail="all" if tail is None else max(0, int(tail)),
            )
        wanted = {
            str(t["ID"]) for t in self._slot_tasks(name, handle.index, fresh=True) if "ID" in t
        }
        return task_lines(log_lines(strip_stream_headers(chunks)), wanted)

    def find(self, cluster: str) -> list[MemberHandle]:
        handles = []
        for role in (Role.SIGNALING, Role.PEER):
            name = service_name(cluster, role)
            if self._service(name) is None:
                continue
            slots = (
                {0}
                if role is Role.SIGNALING
                else {int(t["Slot"]) for t in self._tasks(name, fresh=True) if t.get("Slot")}
            )
            handles += [MemberHandle(cluster, role, s, _ref(cluster, role, s)) for s in slots]
        return sorted(handles, key=lambda h: (h.role != Role.SIGNALING, h.index))

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, handle: MemberHandle, timeout_s: float = 10.0) -> None:
        name = service_name(handle.cluster, handle.role)
        if handle.role is Role.SIGNALING:
            self._remove_service(name)
            return
        with self._scaling:  # one read-modify-write of the replica count at a time
            service = self._service(name)
            if service is not None and _replicas(service) >= handle.index:
                self._set_replicas(service, handle.index - 1)
        deadline = time.monotonic() + timeout_s + 5.0
        while time.monotonic() < deadline:
            ready = self._ready_nodes()
            live = [
                t
                for t in self._slot_tasks(name, handle.index, fresh=True)
                if (t.get("Status") or {}).get("State") in _LIVE_TASK_STATES
                and t.get("NodeID") in ready  # a down node's tasks never report again
            ]
            if not live:
                return
            time.sleep(POLL_S)

    def kill(self, handle: MemberHandle) -> None:
        from docker.errors import APIError, NotFound

        task = self._current_task(service_name(handle.cluster, handle.role), handle.index, True)
        if task is None:
            return
        container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if task.get("NodeID") != self.node_id:
            raise LaunchError(
                f"{handle.role} {handle.index} runs on swarm node {task.get('NodeID')}: kill "
                "works for tasks on the supervisor's own node only"
            )
        if not container:
            return
        try:
            with engine_errors(f"killing {handle.role} {handle.index}", NotFound, APIError):
                self._api.kill(container, signal="SIGKILL")
        except (NotFound, APIError) as exc:
            if isinstance(exc, NotFound) or "is not running" in str(exc):
                return
            raise LaunchError(f"killing {handle.role} {handle.index}: {_first_line(exc)}") from exc

    def remove_cluster(self, cluster: str, purge: bool = True) -> None:
        """Remove the cluster's services, then its secrets and volumes (on this engine).

        Volumes go even without ``purge``: on a swarm a slot may land on another node at the
        next ``up``, so a kept volume would not keep the node's identity anyway."""
        for role in (Role.PEER, Role.SIGNALING):
            self._remove_service(service_name(cluster, role))
        self._wait_containers_gone(cluster)
        selector = {"label": [f"{LABEL_CLUSTER}={cluster}"]}
        with engine_errors(f"removing the secrets of cluster {cluster!r}"):
            for secret in self._api.secrets(filters=selector):
                self._quietly(lambda s=secret["ID"]: self._api.remove_secret(s))
            volumes = self._api.volumes(filters=selector).get("Volumes") or []
        for volume in volumes:
            self._quietly(lambda v=volume["Name"]: self._api.remove_volume(v, force=True))

    def _remove_service(self, name: str) -> None:
        self._quietly(lambda: self._api.remove_service(name))
        with self._lock:
            self._tasks_cache.pop(name, None)

    def _wait_containers_gone(self, cluster: str, role: Role | None = None) -> None:
        """Wait for this engine's containers of the cluster to go (Swarm stops them after the
        service is removed), then force-remove any left."""
        wanted = [f"{LABEL_CLUSTER}={cluster}"]
        if role is not None:
            wanted.append(f"{LABEL_ROLE}={role}")
        deadline = time.monotonic() + REMOVE_TIMEOUT_S
        while True:
            with engine_errors(f"listing the containers of cluster {cluster!r}"):
                rows = self._api.containers(all=True, filters={"label": wanted})
            running = [r for r in rows if r.get("State") in ("running", "restarting", "created")]
            if not running or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        for row in rows:
            self._quietly(lambda c=row["Id"]: self._api.remove_container(c, force=True, v=True))

    @staticmethod
    def _quietly(action: Any) -> None:
        from docker.errors import NotFound

        with contextlib.suppress(NotFound), engine_errors("removing", NotFound):
            action()


def swarm_config(config: SupervisorConfig, launcher: SwarmLauncher) -> SupervisorConfig:
    """``config`` with the addresses the swarm decides: the signaling server on the manager's
    swarm address, and the peers' ICE addresses — the manager's address on a one-node swarm,
    each host's own non-loopback addresses (``auto``) when the swarm spans hosts."""
    manager = launcher.manager_address()
    multi_host = len(launcher.node_addresses()) > 1
    return dataclasses.replace(config, host=manager, ice_address="auto" if multi_host else manager)


# ---------------------------------------------------------------------------------------------
# Helpers (pure)


def _replicas(service: Mapping[str, Any]) -> int:
    return int(((service["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0))


def strip_stream_headers(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Service logs come multiplexed (8-byte headers per frame) when the service has no TTY."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while len(pending) >= 8:
            size = int.from_bytes(pending[4:8], "big")
            if pending[0] not in (0, 1, 2) or pending[1:4] != b"\0\0\0":
                yield pending  # not multiplexed after all
                pending = b""
                break
            if len(pending) < 8 + size:
                break
            yield pending[8 : 8 + size]
            pending = pending[8 + size :]
    if pending:
        yield pending


def task_lines(lines: Iterator[str], task_ids: set[str]) -> Iterator[str]:
    """Keep the lines of ``task_ids``; a details prefix ``k=v,...`` names the task."""
    for line in lines:
        details, _, text = line.partition(" ")
        fields = dict(kv.split("=", 1) for kv in details.split(",") if "=" in kv)
        task = fields.get("com.docker.swarm.task.id")
        if task is None:
            yield line
        elif task in task_ids:
            yield text


__all__ = ["LABEL_INDEX", "SECRETS_DIR", "SwarmLauncher", "peer_ports", "service_name"]
