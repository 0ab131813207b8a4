"""The supervisor: one asyncio loop that runs a cluster and keeps it running.

Theory of operation:
- ``start()`` allocates ports (documented defaults when free, else free ones), binds the front
  ROUTER and the event PUB, starts the Prometheus exporter, writes the state file (so clients can
  find it at once), then launches the signaling server and the peers through the ``Launcher``.
- The *monitor* task checks every member's state; a member that exited while we did not ask it
  to is restarted with the same spec (same data dir → same node ID, same ports) after a backoff
  that doubles on repeated crashes and resets once the member has run for ``STABLE_AFTER_S``.
- The *health* task asks every peer for ``id``: a peer that answers is ``up``; one whose process
  runs but does not answer is ``starting``; one whose process is gone is ``down``.
- One SUB socket per peer feeds the event forwarder, which re-publishes every event on the
  supervisor's PUB with ``index`` added and feeds ``node.stats`` into the metrics.
- Front requests each run in their own task (``front.FrontServer``); commands for node *i* go
  through one ``AsyncControlClient`` per node, which multiplexes concurrent calls.

Invariants: the state file always lists exactly the current members with their current refs;
launcher calls that may block (process spawn, Docker API) run in worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from control.client import AsyncControlClient, decode_event
from control.codec import pack
from control.errors import CommandError, ErrorCode, ProtocolError, RemoteError, Timeout, Unreachable
from control.schema import Request
from control.server import RouterServer
from supervisor.front import front_server, route
from supervisor.launcher import Launcher, MemberHandle, MemberSpec, MemberState, Role
from supervisor.metrics import ClusterMetrics
from supervisor.ports import HOST, pick_port, tcp_endpoint
from supervisor.spec import (
    MAX_PEERS,
    SupervisorConfig,
    node_spec,
    signaling_spec,
    signaling_url,
)
from supervisor.state import SUPERVISOR_LOG, ClusterState, NodeRecord, save_state

log = logging.getLogger(__name__)

T = TypeVar("T")

MONITOR_INTERVAL_S = 0.25
HEALTH_INTERVAL_S = 1.0
HEALTH_TIMEOUT_S = 2.0
STATUS_TIMEOUT_S = 3.0
NODE_COMMAND_TIMEOUT_S = 30.0
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
STOP_TIMEOUT_S = 10.0


class Health(enum.StrEnum):
    UP = "up"
    STARTING = "starting"
    DOWN = "down"


@dataclass(eq=False)
class Member:
    """Runtime bookkeeping for one member (mutable; owned by the supervisor loop)."""

    spec: MemberSpec
    handle: MemberHandle | None = None
    health: Health = Health.STARTING
    restarts: int = 0
    node_id: str | None = None
    control: str | None = None
    events: str | None = None
    client: AsyncControlClient | None = None
    sub: zmq.asyncio.Socket | None = None
    forwarder: asyncio.Task[None] | None = None
    stopping: bool = False
    started_at: float = 0.0
    backoff_s: float = RESTART_BACKOFF_INITIAL_S
    restart_due: float | None = None
    last_exit_code: int | None = None
    announced_up: bool = False
    engine_restarts_now: int = 0  # the backend's own restart count (Docker RestartCount)
    engine_restarts_seen: int = 0

    @property
    def index(self) -> int:
        return self.spec.index

    @property
    def role(self) -> Role:
        return self.spec.role


def _arg_int(args: Mapping[str, Any], name: str) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandError(ErrorCode.BAD_ARGS, f"'{name}' must be an integer")
    return value


class Supervisor:
    def __init__(
        self,
        config: SupervisorConfig,
        launcher: Launcher,
        *,
        offload: bool | None = None,
    ) -> None:
        self.config = config
        self.launcher = launcher
        # Blocking launchers run in worker threads; the memory launcher runs inline so that test
        # callbacks can touch the event loop.
        self._offload = launcher.name != "memory" if offload is None else offload
        self.ctx = zmq.asyncio.Context()
        self.metrics = ClusterMetrics()
        self.peers: dict[int, Member] = {}
        self.signaling: Member | None = None
        self.stop_requested = asyncio.Event()
        self._front: RouterServer | None = None
        self._pub: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._taken_ports: set[int] = set()
        self._status = "starting"
        self._scale_lock = asyncio.Lock()
        self.front_endpoint = ""
        self.events_endpoint = ""
        self.metrics_url = ""
        self.signaling_url = ""

    # -- helpers -------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._offload:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    def _publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        if self._pub is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._pub.send_multipart([topic.encode(), pack(dict(payload))], flags=zmq.NOBLOCK)

    def _publish_own(self, topic: str, member: Member, **fields: Any) -> None:
        body = {
            "ts": int(time.time() * 1000),
            "node": member.node_id or "",
            "index": member.index,
            "role": str(member.role),
            **fields,
        }
        self._publish(topic, body)

    def members(self) -> list[Member]:
        out = [self.signaling] if self.signaling is not None else []
        return out + [self.peers[i] for i in sorted(self.peers)]

    def restarts_total(self) -> int:
        return sum(m.restarts for m in self.members())

    def state(self) -> ClusterState:
        nodes = tuple(
            NodeRecord(
                index=m.index,
                control=m.control or "",
                events=m.events or "",
                id=m.node_id,
                ref=m.handle.ref if m.handle else None,
                data_dir=m.spec.data_dir,
                log_path=m.spec.log_path,
                restarts=m.restarts,
            )
            for m in (self.peers[i] for i in sorted(self.peers))
        )
        sig = self.signaling
        return ClusterState(
            cluster=self.config.cluster,
            backend=str(self.config.backend),
            supervisor_pid=os.getpid(),
            front=self.front_endpoint,
            events=self.events_endpoint,
            metrics=self.metrics_url,
            signaling=self.signaling_url,
            status=self._status,
            peers=len(self.peers),
            signaling_ref=sig.handle.ref if sig and sig.handle else None,
            signaling_log=sig.spec.log_path if sig else None,
            signaling_restarts=sig.restarts if sig else 0,
            supervisor_log=str(self.config.cluster_dir / SUPERVISOR_LOG),
            nodes=nodes,
        )

    def save(self) -> None:
        try:
            save_state(self.state(), self.config.state_root)
        except OSError as exc:
            log.error("cannot write cluster state: %s", exc)

    def _update_metrics(self) -> None:
        up = sum(1 for m in self.peers.values() if m.health is Health.UP)
        self.metrics.set_cluster(up, len(self.peers), self.restarts_total())

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        taken = self._taken_ports
        front_port = pick_port(cfg.front_port, taken)
        events_port = pick_port(cfg.events_port, taken)
        metrics_port = pick_port(cfg.metrics_port, taken)
        sig_port = pick_port(cfg.signaling_port, taken)
        self.front_endpoint = tcp_endpoint(front_port)
        self.events_endpoint = tcp_endpoint(events_port)
        self.metrics_url = f"http://{HOST}:{metrics_port}/metrics"
        self.signaling_url = signaling_url(sig_port)

        self._pub = self.ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        self._pub.bind(self.events_endpoint)
        self._front = front_server(self.ctx, self.front_endpoint, self.handle_request)
        self._front.bind()
        try:
            self.metrics.serve(HOST, metrics_port)
        except OSError as exc:
            log.warning("metrics exporter not started on port %d: %s", metrics_port, exc)
            self.metrics_url = ""
        self.save()
        self._tasks.append(asyncio.create_task(self._front.serve(), name="front"))

        self.signaling = Member(signaling_spec(cfg, sig_port))
        await self._launch(self.signaling)
        for index in range(1, cfg.peers + 1):
            await self._add_peer(index)
        self._status = "running"
        self.save()
        self._tasks.append(asyncio.create_task(self._monitor_loop(), name="monitor"))
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        log.info(
            "cluster %s: %d peers, front %s, events %s, metrics %s, signaling %s",
            cfg.cluster,
            len(self.peers),
            self.front_endpoint,
            self.events_endpoint,
            self.metrics_url,
            self.signaling_url,
        )

    async def _add_peer(self, index: int) -> Member:
        control_port = pick_port(0, self._taken_ports)
        events_port = pick_port(0, self._taken_ports)
        control, events = tcp_endpoint(control_port), tcp_endpoint(events_port)
        member = Member(node_spec(self.config, index, self.signaling_url, control, events))
        member.control, member.events = control, events
        member.client = AsyncControlClient(control, NODE_COMMAND_TIMEOUT_S, context=self.ctx)
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(events)
        member.sub = sub
        member.forwarder = asyncio.create_task(self._forward_events(member), name=f"events-{index}")
        self.peers[index] = member
        await self._launch(member)
        return member

    async def _launch(self, member: Member) -> None:
        member.stopping = False
        member.health = Health.STARTING
        member.announced_up = False
        member.started_at = time.monotonic()
        try:
            member.handle = await self._call(self.launcher.start, member.spec)
            member.engine_restarts_now = member.engine_restarts_seen = 0  # a new container
        except Exception as exc:
            # Treated like a crash: the monitor retries with backoff.
            log.error("cannot start %s %d: %s", member.role, member.index, exc)
            member.handle = None
            member.health = Health.DOWN
            member.restart_due = time.monotonic() + member.backoff_s
        self.save()

    async def _stop_member(self, member: Member) -> None:
        member.stopping = True
        member.restart_due = None
        if member.handle is not None:
            try:
                await self._call(self.launcher.stop, member.handle, STOP_TIMEOUT_S)
            except Exception as exc:
                log.error("cannot stop %s %d: %s", member.role, member.index, exc)
        member.health = Health.DOWN

    async def _dispose_peer(self, member: Member) -> None:
        if member.forwarder is not None:
            member.forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await member.forwarder
        if member.sub is not None:
            member.sub.close(linger=0)
        if member.client is not None:
            await member.client.close()
        self.metrics.forget(member.index)

    async def run(self, install_signals: bool = True) -> None:
        """Start, serve until SIGTERM/SIGINT or ``cluster.shutdown``, then stop everything."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop_requested.set)
        try:
            await self.start()
            await self.stop_requested.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        self._status = "stopping"
        self.save()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        peers = list(self.peers.values())
        await asyncio.gather(*(self._stop_member(m) for m in peers), return_exceptions=True)
        if self.signaling is not None:
            await self._stop_member(self.signaling)
        for member in peers:
            await self._dispose_peer(member)
        if self._front is not None:
            await self._front.close()
        if self._pub is not None:
            self._pub.close(linger=0)
        self.metrics.close()
        self._status = "stopped"
        self.save()
        self.ctx.destroy(linger=0)

    # -- supervision ---------------------------------------------------------------------------

    def _poll_states(self, members: list[Member]) -> list[tuple[MemberState, int | None]]:
        out = []
        engine_restarts = getattr(self.launcher, "restart_count", None)
        for member in members:
            assert member.handle is not None
            st = self.launcher.state(member.handle)
            code = self.launcher.exit_code(member.handle) if st is not MemberState.RUNNING else None
            if engine_restarts is not None and st is MemberState.RUNNING:
                # Docker restarts a crashed container itself (restart policy on-failure): count
                # those restarts too, so `status` shows every crash.
                member.engine_restarts_now = int(engine_restarts(member.handle) or 0)
            out.append((st, code))
        return out

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL_S)
            try:
                await self._monitor_once()
            except Exception:
                log.exception("monitor pass failed")

    async def _monitor_once(self) -> None:
        now = time.monotonic()
        watched = [
            m
            for m in self.members()
            if m.handle is not None and not m.stopping and m.restart_due is None
        ]
        states = await self._call(self._poll_states, watched) if watched else []
        for member, (st, code) in zip(watched, states, strict=True):
            if member.engine_restarts_now > member.engine_restarts_seen:
                member.restarts += member.engine_restarts_now - member.engine_restarts_seen
                member.engine_restarts_seen = member.engine_restarts_now
                self._publish_own(
                    "cluster.node_restarted", member, exit_code=None, restarts=member.restarts
                )
                self._update_metrics()
                self.save()
            if st is MemberState.RUNNING or member.stopping:
                continue
            member.health = Health.DOWN
            member.last_exit_code = code
            ran_s = now - member.started_at
            if ran_s >= STABLE_AFTER_S:
                member.backoff_s = RESTART_BACKOFF_INITIAL_S
            member.restart_due = now + member.backoff_s
            log.warning(
                "%s %d exited (%s, code %s) after %.1f s; restarting in %.1f s",
                member.role,
                member.index,
                st,
                code,
                ran_s,
                member.backoff_s,
            )
            member.backoff_s = min(member.backoff_s * 2, RESTART_BACKOFF_MAX_S)
            self._update_metrics()
        for member in self.members():
            if member.restart_due is not None and now >= member.restart_due and not member.stopping:
                member.restart_due = None
                member.restarts += 1
                await self._launch(member)
                if member.handle is not None:
                    self._publish_own(
                        "cluster.node_restarted",
                        member,
                        exit_code=member.last_exit_code,
                        restarts=member.restarts,
                    )
                self._update_metrics()

    @staticmethod
    def _is_down(member: Member) -> bool:
        return member.health is Health.DOWN

    async def _check_health(self, member: Member) -> None:
        if member.client is None or member.health is Health.DOWN or member.stopping:
            return
        try:
            result = await member.client.request("id", timeout_s=HEALTH_TIMEOUT_S)
        except (Unreachable, Timeout, ProtocolError, RemoteError):
            if member.health is Health.UP:
                member.health = Health.STARTING
            return
        if self._is_down(member):
            return  # exited while we were asking
        node_id = result.get("id")
        if isinstance(node_id, str) and node_id != member.node_id:
            member.node_id = node_id
            self.save()
        member.health = Health.UP
        if not member.announced_up:
            member.announced_up = True
            self._publish_own("cluster.node_started", member, restarts=member.restarts)

    async def _health_loop(self) -> None:
        while True:
            peers = list(self.peers.values())
            await asyncio.gather(*(self._check_health(m) for m in peers), return_exceptions=True)
            sig = self.signaling
            if sig is not None and sig.handle is not None and sig.health is Health.STARTING:
                sig.health = Health.UP  # no control socket: running counts as up
            self._update_metrics()
            await asyncio.sleep(HEALTH_INTERVAL_S)

    async def _forward_events(self, member: Member) -> None:
        assert member.sub is not None
        while True:
            frames = await member.sub.recv_multipart()
            decoded = decode_event(frames)
            if decoded is None:
                log.warning("malformed event from node %d dropped", member.index)
                continue
            topic, payload = decoded
            payload["index"] = member.index
            self._publish(topic, payload)
            if topic == "node.stats":
                self.metrics.observe_stats(member.index, payload)
            if member.node_id is None and isinstance(payload.get("node"), str):
                member.node_id = payload["node"]

    # -- front endpoint ------------------------------------------------------------------------

    async def handle_request(self, req: Request) -> Mapping[str, Any]:
        return await route(req, self._cluster_commands(), self.peers, self._forward)

    async def _forward(self, member: Member, cmd: str, args: Mapping[str, Any]) -> dict[str, Any]:
        if member.client is None or member.health is Health.DOWN or member.stopping:
            raise CommandError(
                ErrorCode.NODE_UNAVAILABLE, f"node {member.index} is down (restarting)"
            )
        try:
            return await member.client.request(cmd, args, timeout_s=NODE_COMMAND_TIMEOUT_S)
        except RemoteError as exc:
            raise CommandError(exc.code, exc.message, exc.details) from None
        except Unreachable as exc:
            raise CommandError(
                ErrorCode.NODE_UNAVAILABLE, f"node {member.index} is unreachable: {exc}"
            ) from None
        except Timeout as exc:
            raise CommandError(ErrorCode.TIMEOUT, f"node {member.index}: {exc}") from None
        except ProtocolError as exc:
            raise CommandError(ErrorCode.INTERNAL, f"node {member.index}: {exc}") from None

    def _cluster_commands(self) -> dict[str, Callable[[Request], Awaitable[Mapping[str, Any]]]]:
        return {
            "cluster.status": self._cmd_status,
            "cluster.scale": self._cmd_scale,
            "cluster.kill": self._cmd_kill,
            "cluster.restart": self._cmd_restart,
            "cluster.shutdown": self._cmd_shutdown,
            "cluster.metrics": self._cmd_metrics,
        }

    async def _node_status(self, member: Member) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "index": member.index,
            "id": member.node_id,
            "control": member.control,
            "events": member.events,
            "ref": member.handle.ref if member.handle else None,
            "peers": None,
            "rt": None,
            "restarts": member.restarts,
            "health": str(member.health),
        }
        if member.client is not None and member.health is Health.UP:
            rt: Any
            peers: Any
            rt, peers = await asyncio.gather(
                member.client.request("rt", timeout_s=STATUS_TIMEOUT_S),
                member.client.request("peers", timeout_s=STATUS_TIMEOUT_S),
                return_exceptions=True,
            )
            if isinstance(rt, dict) and isinstance(rt.get("size"), int):
                entry["rt"] = rt["size"]
            if isinstance(peers, dict) and isinstance(peers.get("peers"), list):
                entry["peers"] = len(peers["peers"])
        return entry

    async def _cmd_status(self, req: Request) -> dict[str, Any]:
        members = [self.peers[i] for i in sorted(self.peers)]
        nodes = await asyncio.gather(*(self._node_status(m) for m in members))
        sig = self.signaling
        return {
            "cluster": self.config.cluster,
            "backend": str(self.config.backend),
            "status": self._status,
            "supervisor_pid": os.getpid(),
            "nodes": list(nodes),
            "signaling": {
                "url": self.signaling_url,
                "health": str(sig.health) if sig else "down",
                "restarts": sig.restarts if sig else 0,
                "ref": sig.handle.ref if sig and sig.handle else None,
            },
            "front": self.front_endpoint,
            "events": self.events_endpoint,
            "metrics": self.metrics_url,
        }

    async def _cmd_scale(self, req: Request) -> dict[str, Any]:
        target = _arg_int(req.args, "peers")
        if not 1 <= target <= MAX_PEERS:
            raise CommandError(ErrorCode.BAD_ARGS, f"peers must be in 1..{MAX_PEERS}")
        async with self._scale_lock:
            added, removed = [], []
            current = len(self.peers)
            for index in range(current + 1, target + 1):
                await self._add_peer(index)
                added.append(index)
            for index in range(current, target, -1):
                member = self.peers[index]
                await self._stop_member(member)
                await self._dispose_peer(member)
                del self.peers[index]
                removed.append(index)
            self.save()
            self._update_metrics()
        return {"peers": len(self.peers), "added": added, "removed": removed}

    def _member_arg(self, req: Request) -> Member:
        index = _arg_int(req.args, "index")
        if index == 0 and self.signaling is not None:
            return self.signaling
        member = self.peers.get(index)
        if member is None:
            raise CommandError(
                ErrorCode.BAD_ARGS,
                f"no member {index}: 0 is the signaling server, peers are 1..{len(self.peers)}",
            )
        return member

    async def _cmd_kill(self, req: Request) -> dict[str, Any]:
        member = self._member_arg(req)
        if member.handle is None:
            raise CommandError(ErrorCode.NODE_UNAVAILABLE, f"member {member.index} is down")
        await self._call(self.launcher.kill, member.handle)
        return {"index": member.index, "killed": True, "ref": member.handle.ref}

    async def _cmd_restart(self, req: Request) -> dict[str, Any]:
        member = self._member_arg(req)
        await self._stop_member(member)
        code = await self._call(self.launcher.exit_code, member.handle) if member.handle else None
        member.last_exit_code = code
        member.restarts += 1
        await self._launch(member)
        self._publish_own(
            "cluster.node_restarted", member, exit_code=code, restarts=member.restarts
        )
        self._update_metrics()
        return {
            "index": member.index,
            "restarts": member.restarts,
            "ref": member.handle.ref if member.handle else None,
        }

    async def _cmd_shutdown(self, req: Request) -> dict[str, Any]:
        # Reply first, then stop: the reply is sent before the loop gets to the stop event.
        asyncio.get_running_loop().call_later(0.1, self.stop_requested.set)
        return {"shutting_down": True}

    async def _cmd_metrics(self, req: Request) -> dict[str, Any]:
        self._update_metrics()
        return self.metrics.summary()
