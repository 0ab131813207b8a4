#!/usr/bin/env python3
"""Bring a webrtc-dht cluster up and down.

    python orchestrate.py build | up | down | all | status | scale | logs
        [--peers N] [--backend docker|process|auto] [--cluster NAME] [--timeout S]
        [--node N | --signaling] [--follow]

``up`` starts the supervisor (``python -m supervisor run``) detached in its own session and
returns once the DHT is formed; the supervisor keeps running, restarting crashed peers. Exit
codes: 0 ok, 1 failed (not formed, not running, already running), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from supervisor.cluster import (
    FrontClient,
    Ports,
    log_tail,
    make_launcher,
    resolve_backend,
    spawn_supervisor,
    status_table,
    teardown,
    wait_for_state,
    wait_formed,
)
from supervisor.errors import LaunchError, SupervisorError
from supervisor.launcher import MemberHandle, Role
from supervisor.spec import (
    DEFAULT_CLUSTER,
    DEFAULT_UP_TIMEOUT_S,
    MAX_PEERS,
    Backend,
    validate_cluster_name,
)
from supervisor.state import ClusterState, load_state, state_root, supervisor_alive

COMMANDS = ("build", "up", "down", "all", "status", "scale", "logs")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"orchestrate: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    if value > MAX_PEERS:
        raise argparse.ArgumentTypeError(f"at most {MAX_PEERS}, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def _env_port(name: str) -> int | None:
    raw = os.environ.get(name)
    return int(raw) if raw and raw.isdigit() else None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="orchestrate.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("--peers", type=_positive_int, help="number of peers (up, all, scale)")
    p.add_argument("--backend", choices=("docker", "process", "auto"), default="auto")
    p.add_argument("--cluster", default=DEFAULT_CLUSTER)
    p.add_argument("--timeout", type=float, default=DEFAULT_UP_TIMEOUT_S, help="seconds")
    p.add_argument("--node", type=_positive_int, help="logs: peer index")
    p.add_argument("--signaling", action="store_true", help="logs: the signaling server")
    p.add_argument("--follow", "-f", action="store_true", help="logs: keep printing")
    p.add_argument("--state-dir", default=None, help="default $DHT_STATE_DIR")
    p.add_argument("--front-port", type=_port, default=_env_port("DHT_FRONT_PORT"))
    p.add_argument("--events-port", type=_port, default=_env_port("DHT_EVENTS_PORT"))
    p.add_argument("--metrics-port", type=_port, default=_env_port("DHT_METRICS_PORT"))
    p.add_argument("--signaling-port", type=_port, default=_env_port("DHT_SIGNALING_PORT"))
    p.add_argument("--node-arg", action="append", default=[], help="extra flag for every node")
    return p


class Progress:
    """One status line on stderr: redrawn in place on a TTY, plain lines otherwise."""

    def __init__(self, total_s: float) -> None:
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.total_s = total_s
        self.last = ""

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.start
        if self.tty:
            width = 20
            filled = min(width, int(width * elapsed / max(self.total_s, 1e-9)))
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] {elapsed:5.1f}s {message}\033[K")
            sys.stderr.flush()
        elif message != self.last:
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
        self.last = message

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _fail(message: str, code: int = 1) -> int:
    print(f"orchestrate: {message}", file=sys.stderr)
    return code


def _running_state(cluster: str, root: Path) -> ClusterState | None:
    state = load_state(cluster, root)
    return state if state is not None and supervisor_alive(state) else None


def cmd_build(ns: argparse.Namespace, backend: Backend) -> int:
    if backend is not Backend.DOCKER:
        print("process backend: nothing to build", file=sys.stderr)
        return 0
    from supervisor.images import build_images

    tag = build_images(None, lambda line: print(line, file=sys.stderr, flush=True))
    print(f"built image {tag}", file=sys.stderr)
    return 0


def cmd_up(ns: argparse.Namespace, root: Path, backend: Backend) -> int:
    if ns.peers is None:
        return _fail("up needs --peers N (a positive integer)", 2)
    existing = _running_state(ns.cluster, root)
    if existing is not None:
        return _fail(
            f"cluster {ns.cluster!r} is already running (supervisor pid "
            f"{existing.supervisor_pid}, {existing.peers} peers); use `status`, `scale` or `down`"
        )
    if load_state(ns.cluster, root) is not None or make_launcher(backend, root).find(ns.cluster):
        teardown(ns.cluster, root, backend)  # leftovers of a dead supervisor
    ports = Ports(ns.front_port, ns.events_port, ns.metrics_port, ns.signaling_port)
    proc = spawn_supervisor(ns.cluster, ns.peers, backend, root, ports, ns.node_arg)
    progress = Progress(ns.timeout)
    try:
        state = wait_for_state(ns.cluster, root, proc)
        progress(f"supervisor pid {proc.pid}, front {state.front}")
        client = FrontClient(state.front)
        try:
            status = wait_formed(
                client, ns.peers, ns.timeout, progress, alive=lambda: proc.poll() is None
            )
        finally:
            client.close()
    except SupervisorError as exc:
        progress.done()
        tail = log_tail(root / ns.cluster / "supervisor.log", 10)
        print(f"orchestrate: {exc}", file=sys.stderr)
        if tail:
            print(f"--- supervisor log (last lines) ---\n{tail}", file=sys.stderr)
        print("orchestrate: tearing the cluster down", file=sys.stderr)
        teardown(ns.cluster, root, backend)
        return 1
    progress.done()
    elapsed = time.monotonic() - progress.start
    print(
        f"cluster {ns.cluster!r} formed: {ns.peers} peers, backend {backend}, {elapsed:.1f} s",
        file=sys.stderr,
    )
    print(status_table(status))
    print(f"front {state.front}  events {state.events}  metrics {state.metrics or '-'}")
    return 0


def cmd_down(ns: argparse.Namespace, root: Path) -> int:
    state = load_state(ns.cluster, root)
    backend = Backend(state.backend) if state is not None else None
    if not teardown(ns.cluster, root, backend):
        print(f"cluster {ns.cluster!r}: nothing to stop")
        return 0
    print(f"cluster {ns.cluster!r} stopped and removed")
    return 0


def _status(ns: argparse.Namespace, root: Path) -> dict[str, Any] | None:
    state = _running_state(ns.cluster, root)
    if state is None:
        return None
    client = FrontClient(state.front, timeout_s=10.0)
    try:
        return client.call("cluster.status")
    finally:
        client.close()


def cmd_status(ns: argparse.Namespace, root: Path) -> int:
    try:
        status = _status(ns, root)
    except SupervisorError as exc:
        return _fail(f"cluster {ns.cluster!r}: supervisor not answering ({exc})")
    if status is None:
        return _fail(f"cluster {ns.cluster!r} is not running (start it with `up --peers N`)")
    print(
        f"cluster {status['cluster']!r} ({status['backend']}, {len(status['nodes'])} peers, "
        f"supervisor pid {status.get('supervisor_pid')})"
    )
    print(status_table(status))
    return 0


def cmd_scale(ns: argparse.Namespace, root: Path) -> int:
    if ns.peers is None:
        return _fail("scale needs --peers M (a positive integer)", 2)
    state = _running_state(ns.cluster, root)
    if state is None:
        return _fail(f"cluster {ns.cluster!r} is not running")
    client = FrontClient(state.front)
    progress = Progress(ns.timeout)
    try:
        result = client.call("cluster.scale", {"peers": ns.peers}, timeout_s=ns.timeout)
        status = wait_formed(client, ns.peers, ns.timeout, progress)
    except SupervisorError as exc:
        progress.done()
        return _fail(f"scale failed: {exc}")
    finally:
        client.close()
    progress.done()
    print(
        f"scaled to {result['peers']} peers (added {result['added']}, removed {result['removed']})"
    )
    print(status_table(status))
    return 0


def cmd_logs(ns: argparse.Namespace, root: Path) -> int:
    state = load_state(ns.cluster, root)
    if state is None:
        return _fail(f"cluster {ns.cluster!r} has no state (not running)")
    if ns.node is None and not ns.signaling:
        path = Path(state.supervisor_log or root / ns.cluster / "supervisor.log")
        try:
            sys.stdout.write(path.read_text(errors="replace"))
        except OSError as exc:
            return _fail(f"cannot read {path}: {exc}")
        return 0
    if ns.signaling:
        ref = state.signaling_ref
        handle = MemberHandle(ns.cluster, Role.SIGNALING, 0, ref or "")
    else:
        record = state.node(ns.node)
        if record is None:
            return _fail(f"no node {ns.node} in cluster {ns.cluster!r} (1..{len(state.nodes)})")
        ref = record.ref
        handle = MemberHandle(ns.cluster, Role.PEER, ns.node, ref or "")
    if not ref:
        return _fail("that member has never started")
    launcher = make_launcher(Backend(state.backend), root)
    try:
        for line in launcher.logs(handle, follow=ns.follow):
            sys.stdout.write(line)
            sys.stdout.flush()
    except LaunchError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        validate_cluster_name(ns.cluster)
    except ValueError as exc:
        return _fail(str(exc), 2)
    root = state_root(ns.state_dir)
    try:
        if ns.command in ("build", "up", "all"):
            backend = resolve_backend(ns.backend)
            if ns.backend == "auto":
                print(f"backend: {backend} (auto)", file=sys.stderr)
            if ns.command in ("up", "all") and ns.peers is None:
                return _fail(f"{ns.command} needs --peers N (a positive integer)", 2)
            if ns.command in ("build", "all"):
                code = cmd_build(ns, backend)
                if code or ns.command == "build":
                    return code
            return cmd_up(ns, root, backend)
        if ns.command == "down":
            return cmd_down(ns, root)
        if ns.command == "status":
            return cmd_status(ns, root)
        if ns.command == "scale":
            return cmd_scale(ns, root)
        return cmd_logs(ns, root)
    except (SupervisorError, OSError, ValueError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    raise SystemExit(main())
