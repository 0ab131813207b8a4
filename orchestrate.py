#!/usr/bin/env python3
"""Bring a webrtc-dht cluster up and down.

    python orchestrate.py build | up | down | all | status | scale | logs
        [--peers N] [--browser-peers B] [--backend docker|process|swarm|auto] [--cluster NAME]
        [--timeout S] [--secure] [--ice-server URL] [--set NAME=VALUE]
        [--lab nat [--nat eim|symmetric|mix|LIST] [--no-turn]]
        [--node N | --signaling] [--follow]

``up`` starts the supervisor (``python -m supervisor run``) detached in its own session and
returns once the DHT is formed; the supervisor keeps running, restarting crashed peers. Exit
codes: 0 ok, 1 failed (not formed, not running, already running), 2 usage.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from node import clikit, tunables
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
from supervisor.natlab import NAT_HELP, lab_options
from supervisor.spec import DEFAULT_CLUSTER, DEFAULT_UP_TIMEOUT_S, MAX_PEERS, Backend, LabOptions
from supervisor.state import ClusterState, load_state, state_root, supervisor_alive

PROG = "orchestrate.py"
BACKEND_CHOICES = ("docker", "process", "swarm", "auto")

app = clikit.make_app(PROG, (__doc__ or "").split("\n\n")[0])


def _env_port(name: str) -> int | None:
    raw = os.environ.get(name)
    return int(raw) if raw and raw.isdigit() else None


_PURGE_HELP = "also delete the peers' data dirs/volumes (keys, so node IDs, and stored records)"
ClusterOpt = Annotated[
    str, typer.Option("--cluster", parser=clikit.cluster_name, help="cluster name.")
]
StateDirOpt = Annotated[
    str | None, typer.Option("--state-dir", help="state directory (default $DHT_STATE_DIR).")
]
PeersOpt = Annotated[
    int | None,
    typer.Option("--peers", parser=clikit.peer_count(MAX_PEERS), help="number of peers."),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        parser=clikit.one_of(BACKEND_CHOICES),
        help="docker, process, swarm or auto.",
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", parser=clikit.positive_float, help="seconds to wait.")
]
PortOpt = Annotated[
    int | None,
    typer.Option(parser=clikit.optional_port, help="0 = any free port (default $DHT_*_PORT)."),
]
NodeArgOpt = Annotated[
    list[str] | None,
    typer.Option("--node-arg", metavar="FLAG", help="extra flag for every node (repeatable)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="NAME=VALUE",
        help="a node setting for every peer, e.g. repair_interval_s=30 (repeatable; "
        "`dht-node --help` lists the names).",
    ),
]
BrowserPeersOpt = Annotated[
    int,
    typer.Option(
        "--browser-peers",
        parser=clikit.int_range(0, MAX_PEERS, what="a non-negative integer"),
        help="headless-Chromium peers beside the Python ones (process backend).",
    ),
]

LabOpt = Annotated[
    str, typer.Option("--lab", help="'nat': every peer behind its own NAT (root; process backend).")
]
NatOpt = Annotated[str, typer.Option("--nat", help=NAT_HELP)]
TurnOpt = Annotated[
    bool, typer.Option("--turn/--no-turn", help="the lab's coturn relays (off: STUN only).")
]


SecureOpt = Annotated[
    bool,
    typer.Option(
        "--secure",
        help="CURVE (authenticated, encrypted) control plane; always on for --backend swarm.",
    ),
]


IceServerOpt = Annotated[
    list[str] | None,
    typer.Option("--ice-server", metavar="URL", help="STUN/TURN URL for every peer (repeatable)."),
]


@dataclass(frozen=True, slots=True)
class UpArgs:
    cluster: str
    root: Path
    peers: int
    timeout: float
    ports: Ports
    node_args: tuple[str, ...]
    browser_peers: int = 0
    secure: bool = False
    ice_servers: tuple[str, ...] = ()
    lab: LabOptions | None = None  # --lab nat (supervisor.natlab)


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
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _running_state(cluster: str, root: Path) -> ClusterState | None:
    state = load_state(cluster, root)
    return state if state is not None and supervisor_alive(state) else None


def _build(backend: Backend) -> int:
    if backend not in (Backend.DOCKER, Backend.SWARM):
        print("process backend: nothing to build", file=sys.stderr)
        return 0
    from imagebuild import build_images

    tag = build_images(None, lambda line: print(line, file=sys.stderr, flush=True))
    print(f"built image {tag}", file=sys.stderr)
    return 0


def _backend_for(name: str, process_only: bool = False) -> Backend:
    """``--backend`` resolved; ``auto`` is the process backend for what only runs there (browser
    peers, the NAT lab), without asking a Docker engine."""
    backend = resolve_backend(name, process_only)
    if name == "auto":
        why = " (auto: browser peers and the NAT lab run there)" if process_only else " (auto)"
        print(f"backend: {backend}{why}", file=sys.stderr)
    return backend


def _up(args: UpArgs, backend: Backend) -> int:
    # Usage errors first: before anything asks a Docker engine.
    if args.browser_peers and backend is not Backend.PROCESS:
        return _fail("--browser-peers needs the process backend (the image has no chromium)", 2)
    if args.lab is not None and (backend is not Backend.PROCESS or args.browser_peers):
        return _fail("--lab nat runs Python peers with the process backend only", 2)
    existing = _running_state(args.cluster, args.root)
    if existing is not None:
        return _fail(
            f"cluster {args.cluster!r} is already running (supervisor pid "
            f"{existing.supervisor_pid}, {existing.peers} peers); use `status`, `scale` or `down`"
        )
    if load_state(args.cluster, args.root) is not None or make_launcher(backend, args.root).find(
        args.cluster
    ):
        teardown(args.cluster, args.root, backend)  # leftovers of a dead supervisor
    proc = spawn_supervisor(
        args.cluster,
        args.peers,
        backend,
        args.root,
        args.ports,
        args.node_args,
        browser_peers=args.browser_peers,
        secure=args.secure,
        ice_servers=args.ice_servers,
        lab=args.lab,
    )
    progress = Progress(args.timeout)
    try:
        state = wait_for_state(args.cluster, args.root, proc)
        progress(f"supervisor pid {proc.pid}, front {state.front}")
        client = FrontClient.of(state)
        try:
            status = wait_formed(
                client,
                args.peers + args.browser_peers,
                args.timeout,
                progress,
                alive=lambda: proc.poll() is None,
            )
        finally:
            client.close()
    except SupervisorError as exc:
        progress.done()
        tail = log_tail(args.root / args.cluster / "supervisor.log", 10)
        print(f"{PROG}: {exc}", file=sys.stderr)
        if tail:
            print(f"--- supervisor log (last lines) ---\n{tail}", file=sys.stderr)
        print(f"{PROG}: tearing the cluster down", file=sys.stderr)
        teardown(args.cluster, args.root, backend)
        return 1
    progress.done()
    elapsed = time.monotonic() - progress.start
    browsers = f" + {args.browser_peers} browser peers" if args.browser_peers else ""
    print(
        f"cluster {args.cluster!r} formed: {args.peers} peers{browsers}, backend {backend}, "
        f"{elapsed:.1f} s",
        file=sys.stderr,
    )
    print(status_table(status))
    print(f"front {state.front}  events {state.events}  metrics {state.metrics or '-'}")
    return 0


def _up_args(
    command: str,
    cluster: str,
    state_dir: str | None,
    peers: int | None,
    timeout: float,
    ports: Ports,
    node_arg: list[str] | None,
) -> UpArgs:
    if peers is None:
        clikit.usage_error(f"{command} needs --peers N (a positive integer)")
    return UpArgs(cluster, state_root(state_dir), peers, timeout, ports, tuple(node_arg or ()))


def _ports(front: int | None, events: int | None, metrics: int | None, sig: int | None) -> Ports:
    return Ports(
        front if front is not None else _env_port("DHT_FRONT_PORT"),
        events if events is not None else _env_port("DHT_EVENTS_PORT"),
        metrics if metrics is not None else _env_port("DHT_METRICS_PORT"),
        sig if sig is not None else _env_port("DHT_SIGNALING_PORT"),
    )


@app.command()
def build(backend: BackendOpt = "auto") -> int:
    """Build the images through the Docker SDK (a no-op for processes)."""
    return _guard(lambda: _build(_backend_for(backend)))


@app.command("up", help="Start the supervisor and N peers; return once the DHT is formed.")
@app.command("all", help="`build`, then `up`.")
def up(
    ctx: typer.Context,
    peers: PeersOpt = None,
    backend: BackendOpt = "auto",
    cluster: ClusterOpt = DEFAULT_CLUSTER,
    timeout: TimeoutOpt = DEFAULT_UP_TIMEOUT_S,
    state_dir: StateDirOpt = None,
    front_port: PortOpt = None,
    events_port: PortOpt = None,
    metrics_port: PortOpt = None,
    signaling_port: PortOpt = None,
    node_arg: NodeArgOpt = None,
    set_: SetOpt = None,
    browser_peers: BrowserPeersOpt = 0,
    secure: SecureOpt = False,
    ice_server: IceServerOpt = None,
    lab: LabOpt = "",
    nat: NatOpt = "eim",
    turn: TurnOpt = True,
) -> int:
    command = ctx.info_name or "up"
    ports = _ports(front_port, events_port, metrics_port, signaling_port)
    try:
        settings = tunables.node_args(set_ or ())
    except ValueError as exc:
        clikit.usage_error(str(exc))
    args = _up_args(
        command, cluster, state_dir, peers, timeout, ports, [*(node_arg or ()), *settings]
    )
    try:
        lab_opts = lab_options(lab, nat, turn, args.peers)
    except ValueError as exc:
        clikit.usage_error(str(exc))
    args = dataclasses.replace(
        args,
        browser_peers=browser_peers,
        secure=secure,
        ice_servers=tuple(ice_server or ()),
        lab=lab_opts,
    )

    def run() -> int:
        kind = _backend_for(backend, process_only=lab_opts is not None or browser_peers > 0)
        if lab_opts is not None and kind is not Backend.PROCESS:
            return _fail("--lab nat runs Python peers with the process backend only", 2)
        if command == "all" and (code := _build(kind)):
            return code
        return _up(args, kind)

    return _guard(run)


@app.command()
def down(
    cluster: ClusterOpt = DEFAULT_CLUSTER,
    state_dir: StateDirOpt = None,
    purge: Annotated[bool, typer.Option(help=_PURGE_HELP)] = False,
) -> int:
    """Stop and remove the cluster; the peers' data (keys, records) stays unless --purge."""

    def run() -> int:
        root = state_root(state_dir)
        state = load_state(cluster, root)
        kind = Backend(state.backend) if state is not None else None
        if not teardown(cluster, root, kind, purge=purge):
            print(f"cluster {cluster!r}: nothing to stop")
            return 0
        print(f"cluster {cluster!r} stopped and removed")
        return 0

    return _guard(run)


@app.command()
def status(cluster: ClusterOpt = DEFAULT_CLUSTER, state_dir: StateDirOpt = None) -> int:
    """The peer table with restarts and health."""

    def run() -> int:
        state = _running_state(cluster, state_root(state_dir))
        if state is None:
            return _fail(f"cluster {cluster!r} is not running (start it with `up --peers N`)")
        client = FrontClient.of(state, timeout_s=10.0)
        try:
            reply = client.call("cluster.status")
        except SupervisorError as exc:
            return _fail(f"cluster {cluster!r}: supervisor not answering ({exc})")
        finally:
            client.close()
        return _show(
            f"cluster {reply['cluster']!r} ({reply['backend']}, {len(reply['nodes'])} peers, "
            f"supervisor pid {reply.get('supervisor_pid')})",
            reply,
        )

    return _guard(run)


@app.command()
def scale(
    peers: PeersOpt = None,
    cluster: ClusterOpt = DEFAULT_CLUSTER,
    timeout: TimeoutOpt = DEFAULT_UP_TIMEOUT_S,
    state_dir: StateDirOpt = None,
) -> int:
    """Grow or shrink a running cluster to M peers."""
    if peers is None:
        clikit.usage_error("scale needs --peers M (a positive integer)")
    target = peers

    def run() -> int:
        state = _running_state(cluster, state_root(state_dir))
        if state is None:
            return _fail(f"cluster {cluster!r} is not running")
        client = FrontClient.of(state)
        progress = Progress(timeout)
        try:
            result = client.call("cluster.scale", {"peers": target}, timeout_s=timeout)
            table = wait_formed(client, target, timeout, progress)
        except SupervisorError as exc:
            progress.done()
            return _fail(f"scale failed: {exc}")
        finally:
            client.close()
        progress.done()
        added, removed = result["added"], result["removed"]
        return _show(f"scaled to {result['peers']} peers (added {added}, removed {removed})", table)

    return _guard(run)


@app.command()
def logs(
    node: Annotated[
        int | None,
        typer.Option("--node", parser=clikit.peer_count(MAX_PEERS), help="a peer's log."),
    ] = None,
    signaling: Annotated[
        bool, typer.Option("--signaling", help="the signaling server's log.")
    ] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing.")] = False,
    cluster: ClusterOpt = DEFAULT_CLUSTER,
    state_dir: StateDirOpt = None,
) -> int:
    """A peer's, the signaling server's or (default) the supervisor's log."""
    return _guard(lambda: _logs(cluster, state_root(state_dir), node, signaling, follow))


def _logs(cluster: str, root: Path, node: int | None, signaling: bool, follow: bool) -> int:
    state = load_state(cluster, root)
    if state is None:
        return _fail(f"cluster {cluster!r} has no state (not running)")
    if node is None and not signaling:
        path = Path(state.supervisor_log or root / cluster / "supervisor.log")
        try:
            sys.stdout.write(path.read_text(errors="replace"))
        except OSError as exc:
            return _fail(f"cannot read {path}: {exc}")
        return 0
    if signaling:
        ref = state.signaling_ref
        handle = MemberHandle(cluster, Role.SIGNALING, 0, ref or "")
    else:
        assert node is not None
        record = state.node(node)
        if record is None:
            return _fail(f"no node {node} in cluster {cluster!r} (1..{len(state.nodes)})")
        ref = record.ref
        handle = MemberHandle(cluster, Role.PEER, node, ref or "")
    if not ref:
        return _fail("that member has never started")
    launcher = make_launcher(Backend(state.backend), root)
    try:
        for line in launcher.logs(handle, follow=follow):
            # Process logs keep their newline, container and service logs do not.
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            sys.stdout.flush()
    except LaunchError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 0
    return 0


def _show(headline: str, status: Any) -> int:
    print(headline)
    print(status_table(status))
    return 0


def _guard(run: Any) -> int:
    """Run a command body: our errors are one line and exit 1, Ctrl-C exits 130."""
    try:
        return int(run())
    except (SupervisorError, OSError, ValueError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def main(argv: list[str] | None = None) -> int:
    return clikit.run(app, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
