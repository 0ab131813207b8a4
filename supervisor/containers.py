"""The Docker backend: ``engine_available()`` and ``DockerLauncher`` (the ``Launcher`` protocol).

Every member runs in its own container of the one project image (``webrtc-dht:latest``; the command
picks the role). Invariants:

- **Labels, not names.** Containers carry ``dht.cluster``, ``dht.role``, ``dht.index`` (and
  ``dht.managed-by``); the engine names them. ``find`` and ``remove_cluster`` work from labels
  alone, so another process (``orchestrate.py down``) recovers a cluster, and clusters with
  different names never touch each other. One member identity (cluster, role, index) has at most
  one container: ``start`` removes an older container of the same identity first.
- **Host networking** (``network_mode="host"``): the engine runs with ``--bridge=none`` and every
  member binds 127.0.0.1 ports the supervisor allocated. ``start`` checks that the member's listen
  ports (``--control``, ``--events``, ``--port``) are free and refuses clearly when they are not.
- **Data in named volumes.** ``spec.data_dir`` names a volume (``dht-<cluster>-<index>``, labelled
  ``dht.cluster``) mounted at ``/data`` (an absolute path is bind-mounted instead), so a restarted
  or re-created container keeps its key and therefore its node ID. ``remove_cluster`` deletes the
  volumes (and any labelled network) together with the containers.
- **Who restarts what.** Containers run with restart policy ``on-failure``: when a member crashes
  (non-zero exit, SIGKILL from inside or from the host) the *engine* restarts the same container
  and counts it in ``RestartCount`` (``restart_count``); while it does, ``state`` reports RUNNING.
  A member that the engine will not restart — stopped or killed through the API (``docker kill``
  / ``stop`` / ``kill`` here: the engine treats those as deliberate), or out of retries — reports
  EXITED, and the *supervisor* restarts it by calling ``start(spec)`` again (same volume, same ID).
- ``kill`` is ``docker kill`` (SIGKILL; exit code 137; the engine does not restart it).
  ``crash`` SIGKILLs the container's main process from the host's PID namespace instead, which the
  engine sees as a crash and restarts (tests use it to exercise the restart policy).
- Every engine failure becomes one ``LaunchError``: engine unreachable, image missing ("run
  `python orchestrate.py build`"), port already in use, out of disk.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from supervisor.errors import LaunchError
from supervisor.launcher import MemberHandle, MemberSpec, MemberState, Role

DEFAULT_IMAGE = "webrtc-dht:latest"
LABEL_CLUSTER = "dht.cluster"
LABEL_ROLE = "dht.role"
LABEL_INDEX = "dht.index"
LABEL_MANAGED = "dht.managed-by"
MANAGED_BY = "webrtc-dht"
DATA_MOUNT = "/data"
SECRETS_DIR = "/run/secrets"  # supervisor.spec.SECRETS_DIR: MemberSpec.secrets, read-only
ENGINE_PING_TIMEOUT_S = 1.5
ENGINE_TIMEOUT_S = 30
RESTART_MAX_RETRIES = 10  # engine restarts per container before it gives up (then: EXITED)
LISTEN_FLAGS = ("--control", "--events", "--port")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "0.0.0.0", "*"}
_RUNNING_STATES = {"running", "restarting", "paused"}
BUILD_HINT = "run `python orchestrate.py build`"
UNREACHABLE_HINT = "start dockerd (images/ci-docker.sh) or use --backend process"


def engine_available(timeout_s: float = ENGINE_PING_TIMEOUT_S) -> bool:
    """True when a Docker engine answers a ping within ``timeout_s``; False on any error."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout_s)
    except (DockerException, OSError, ValueError):
        return False
    try:
        return bool(client.ping())
    except (DockerException, OSError, ValueError):
        return False
    finally:
        client.close()


class EngineLauncher:
    """What the launchers that drive a Docker engine share: the image they run, the SDK client
    (``client``, or one for the engine the environment names) and its low-level API."""

    def __init__(self, image: str, client: Any | None, unreachable_hint: str) -> None:
        self.image = image
        self._client = client if client is not None else engine_client(unreachable_hint)
        self._api = self._client.api

    def close(self) -> None:
        self._client.close()


class DockerLauncher(EngineLauncher):
    """Runs cluster members as containers of ``image`` through the Docker SDK."""

    name = "docker"

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        client: Any | None = None,
        restart_max_retries: int = RESTART_MAX_RETRIES,
    ) -> None:
        self.restart_max_retries = restart_max_retries
        super().__init__(
            image, client, "start dockerd (images/ci-docker.sh) or use --backend process"
        )

    # -- starting ----------------------------------------------------------------------------

    def start(self, spec: MemberSpec) -> MemberHandle:
        labels = member_labels(spec.cluster, spec.role, spec.index)
        for old in self._members(spec.cluster, spec.role, spec.index):
            self._remove_container(old.ref)
        for port, flag in listen_ports(spec.argv):
            if not port_free(port):
                raise LaunchError(
                    f"cannot start {spec.role} {spec.index} of cluster {spec.cluster!r}: "
                    f"port {port} ({flag}) is already in use on 127.0.0.1"
                )
        volumes = self._mount(spec)
        with engine_errors(f"starting {spec.role} {spec.index}", image=self.image):
            container = self._client.containers.create(  # create+start: run() would pull
                self.image,
                command=list(spec.argv),
                environment=dict(spec.env),
                labels=labels,
                network_mode="host",
                volumes=volumes,
                restart_policy={
                    "Name": "on-failure",
                    "MaximumRetryCount": self.restart_max_retries,
                },
                init=False,
                stop_signal="SIGTERM",
            )
            container.start()
        return MemberHandle(spec.cluster, spec.role, spec.index, ref=str(container.id))

    def _mount(self, spec: MemberSpec) -> dict[str, dict[str, str]]:
        secrets = {
            host: {"bind": f"{SECRETS_DIR}/{name}", "mode": "ro"}
            for name, host in spec.secrets.items()
        }
        if spec.data_dir is None:
            return secrets
        if os.path.isabs(spec.data_dir):
            return {**secrets, spec.data_dir: {"bind": DATA_MOUNT, "mode": "rw"}}
        labels = {
            LABEL_CLUSTER: spec.cluster,
            LABEL_INDEX: str(spec.index),
            LABEL_MANAGED: MANAGED_BY,
        }
        with engine_errors(f"creating volume {spec.data_dir}"):
            existing = self._api.volumes(filters={"name": spec.data_dir}).get("Volumes") or []
            if not any(v.get("Name") == spec.data_dir for v in existing):
                self._client.volumes.create(name=spec.data_dir, labels=labels)
        return {**secrets, spec.data_dir: {"bind": DATA_MOUNT, "mode": "rw"}}

    # -- inspecting --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The Docker SDK client (``docker.DockerClient``) this launcher drives, for tools and
        tests that look at the engine directly."""
        return self._client

    def inspect(self, handle: MemberHandle) -> dict[str, Any] | None:
        """The engine's ``docker inspect`` of the member's container; None when it is gone."""
        from docker.errors import NotFound

        try:
            with engine_errors(f"inspecting {handle.role} {handle.index}", NotFound):
                return dict(self._api.inspect_container(handle.ref))
        except NotFound:
            return None

    def state(self, handle: MemberHandle) -> MemberState:
        info = self.inspect(handle)
        if info is None:
            return MemberState.MISSING
        status = str(info["State"].get("Status", ""))
        return MemberState.RUNNING if status in _RUNNING_STATES else MemberState.EXITED

    def exit_code(self, handle: MemberHandle) -> int | None:
        info = self.inspect(handle)
        if info is None:
            return None
        state = info["State"]
        if state.get("Status") in _RUNNING_STATES:
            return None
        return int(state.get("ExitCode", 0))

    def restart_count(self, handle: MemberHandle) -> int:
        """How many times the engine restarted this container (0 when it is gone)."""
        info = self.inspect(handle)
        return 0 if info is None else int(info.get("RestartCount", 0))

    def health(self, handle: MemberHandle) -> str | None:
        """The HEALTHCHECK verdict: "starting", "healthy", "unhealthy", or None."""
        info = self.inspect(handle)
        if info is None:
            return None
        health = info["State"].get("Health")
        return None if not health else str(health.get("Status"))

    def logs(
        self, handle: MemberHandle, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        """The member's stdout+stderr as lines without their newline."""
        with engine_errors(f"reading logs of {handle.role} {handle.index}"):
            chunks = self._api.logs(
                handle.ref,
                stdout=True,
                stderr=True,
                stream=True,
                follow=follow,
                tail="all" if tail is None else max(0, int(tail)),
            )
        return log_lines(chunks)

    def find(self, cluster: str) -> list[MemberHandle]:
        return self._members(cluster)

    def _members(
        self, cluster: str, role: Role | None = None, index: int | None = None
    ) -> list[MemberHandle]:
        wanted = [f"{LABEL_CLUSTER}={cluster}"]
        if role is not None:
            wanted.append(f"{LABEL_ROLE}={role}")
        if index is not None:
            wanted.append(f"{LABEL_INDEX}={index}")
        with engine_errors(f"listing cluster {cluster!r}"):
            rows = self._api.containers(all=True, filters={"label": wanted})
        handles = []
        for row in rows:
            handle = _handle_from_labels(cluster, row.get("Labels") or {}, str(row["Id"]))
            if handle is not None:
                handles.append(handle)
        return sorted(handles, key=lambda h: (h.role != Role.SIGNALING, h.index, h.ref))

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, handle: MemberHandle, timeout_s: float = 10.0) -> None:
        from docker.errors import NotFound

        with contextlib.suppress(NotFound), engine_errors(f"stopping {handle.role}", NotFound):
            self._api.stop(handle.ref, timeout=max(0, math.ceil(timeout_s)))

    def kill(self, handle: MemberHandle) -> None:
        from docker.errors import APIError, NotFound

        try:
            with engine_errors(f"killing {handle.role} {handle.index}", NotFound, APIError):
                self._api.kill(handle.ref, signal="SIGKILL")
        except (NotFound, APIError) as exc:
            if isinstance(exc, NotFound) or "is not running" in str(exc):
                return  # already gone / already exited: killing is idempotent
            raise LaunchError(f"killing {handle.role} {handle.index}: {_first_line(exc)}") from exc

    def crash(self, handle: MemberHandle) -> None:
        """SIGKILL the container's main process from outside the engine (a simulated crash the
        restart policy reacts to). Needs the engine on this host and permission to signal it."""
        info = self.inspect(handle)
        pid = 0 if info is None else int(info["State"].get("Pid") or 0)
        if pid <= 0:
            raise LaunchError(f"{handle.role} {handle.index} is not running; nothing to crash")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError as exc:
            raise LaunchError(f"cannot signal pid {pid} of {handle.role}: {exc}") from exc

    def remove_cluster(self, cluster: str, purge: bool = True) -> None:
        for handle in self._members(cluster):
            self._remove_container(handle.ref)
        selector = {"label": [f"{LABEL_CLUSTER}={cluster}"]}
        volumes: list[dict[str, Any]] = []
        if purge:  # otherwise the volumes (keys, so node IDs, and stores) wait for the next up
            with engine_errors(f"removing the volumes of cluster {cluster!r}"):
                volumes = self._api.volumes(filters=selector).get("Volumes") or []
        for volume in volumes:
            self._remove(lambda name=volume["Name"]: self._api.remove_volume(name, force=True))
        with engine_errors(f"removing the networks of cluster {cluster!r}"):
            networks = self._api.networks(filters=selector)
        for network in networks:
            self._remove(lambda net=network["Id"]: self._api.remove_network(net))

    def _remove_container(self, ref: str) -> None:
        self._remove(lambda: self._api.remove_container(ref, force=True, v=True))

    @staticmethod
    def _remove(action: Any) -> None:
        from docker.errors import NotFound

        with contextlib.suppress(NotFound), engine_errors("removing", NotFound):
            action()


# ---------------------------------------------------------------------------------------------
# Helpers (pure where possible)


def member_labels(cluster: str, role: Role, index: int) -> dict[str, str]:
    return {
        LABEL_CLUSTER: cluster,
        LABEL_ROLE: str(role),
        LABEL_INDEX: str(index),
        LABEL_MANAGED: MANAGED_BY,
    }


def _handle_from_labels(cluster: str, labels: Mapping[str, str], ref: str) -> MemberHandle | None:
    try:
        role = Role(labels[LABEL_ROLE])
        index = int(labels[LABEL_INDEX])
    except (KeyError, ValueError):
        return None  # labelled by something else: not ours to interpret
    return MemberHandle(cluster, role, index, ref=ref)


def listen_ports(argv: Sequence[str]) -> list[tuple[int, str]]:
    """The local TCP ports a member will listen on, from its listen flags."""
    found: list[tuple[int, str]] = []
    for i, arg in enumerate(argv[:-1]):
        if arg not in LISTEN_FLAGS:
            continue
        value = argv[i + 1]
        if value.startswith("tcp://"):
            host, _, port_text = value[len("tcp://") :].rpartition(":")
            if host not in LOCAL_HOSTS:
                continue
        else:
            port_text = value
        if port_text.isdigit() and 0 < int(port_text) < 65536:
            found.append((int(port_text), arg))
    return found


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``port`` can be bound (SO_REUSEADDR, like the members: TIME_WAIT is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def log_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


@contextlib.contextmanager
def engine_errors(
    action: str, *passthrough: type[BaseException], image: str | None = None
) -> Iterator[None]:
    """Translate Docker SDK and transport errors into one ``LaunchError`` (cause attached).

    Exceptions in ``passthrough`` propagate unchanged, for callers that handle them."""
    from docker.errors import DockerException, ImageNotFound

    try:
        yield
    except LaunchError:
        raise
    except passthrough:
        raise
    except ImageNotFound as exc:
        what = f"image {image!r}" if image else "the image"
        raise LaunchError(f"{action}: {what} is not built; {BUILD_HINT}") from exc
    except DockerException as exc:
        message = _first_line(exc)
        lowered = message.lower()
        if "no space left on device" in lowered:
            raise LaunchError(f"{action}: the Docker engine is out of disk space") from exc
        if "address already in use" in lowered or "port is already allocated" in lowered:
            raise LaunchError(f"{action}: a port is already in use ({message})") from exc
        if "connection" in lowered and ("refused" in lowered or "aborted" in lowered):
            raise LaunchError(f"{action}: the Docker engine is unreachable ({message})") from exc
        raise LaunchError(f"{action}: {message}") from exc
    except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
        raise LaunchError(f"{action}: the Docker engine is unreachable ({exc})") from exc


def engine_client(hint: str) -> Any:
    """A Docker SDK client of the engine the environment names (DOCKER_HOST, ...); a
    ``LaunchError`` ending in ``hint`` (what to do about it) when the engine does not answer."""
    import docker
    from docker.errors import DockerException

    try:
        return docker.from_env(timeout=ENGINE_TIMEOUT_S)
    except (DockerException, OSError) as exc:
        raise LaunchError(f"the Docker engine is unreachable ({_first_line(exc)}); {hint}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
