# Over 600 lines: the one supervisor loop; every backend, lab and placement event meets here.
"""The supervisor: one asyncio loop that runs a cluster and keeps it running.

Theory of operation:
- ``start()`` allocates ports (documented defaults when free, else free ones), binds the front
  ROUTER and the event PUB, starts the Prometheus exporter, writes the state file (so clients can
  find it at once), then launches the signaling server and the peers through the ``Launcher``.
- The *monitor* task checks every member's state; a member that exited while we did not ask it
  to is restarted with the same spec (same data dir → same node ID, same ports) after a backoff
  (the pure policy in ``supervisor.restart``). Every start and stop of a member goes through
  ``members.Lifecycle`` under that member's lock (see there why).
- The *health* task asks every peer for ``id``: a peer that answers is ``up``; one whose process
  runs but does not answer is ``starting``; one whose process is gone is ``down``.
- One SUB socket per peer feeds the event forwarder, which re-publishes every event on the
  supervisor's PUB with ``index`` added and feeds ``node.stats`` into the metrics.
- Front requests each run in their own task (``control.server.RouterServer``, routed by
  ``front.route``); commands for node *i* go
  through one ``AsyncControlClient`` per node, which multiplexes concurrent calls.

Invariants: the state file always lists exactly the current members with their current refs;
launcher calls that may block (process spawn, Docker API) run in worker threads, never on the loop;
once ``close`` begins nothing is started, and every process ever started is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import zmq
import zmq.asyncio

from control.client import MAX_EVENT_BYTES, AsyncControlClient, decode_event
from control.codec import pack
from control.curve import CurveKeys, Guard, curve_client
from control.errors import CommandError, ErrorCode, ProtocolError, RemoteError, Timeout, Unreachable
from control.limits import SUBSCRIPTION_MAX_BYTES
from control.schema import Request
from control.server import RouterServer
from supervisor.errors import LaunchError
from supervisor.front import front_server, route
from supervisor.lab_cluster import ClusterLab
from supervisor.launcher import Launcher, MemberState
from supervisor.members import Health, Lifecycle, Member, Observation
from supervisor.metrics import ClusterMetrics
from supervisor.natlab import SIGNALING_PORT as NATLAB_SIGNALING_PORT
from supervisor.placement import Placements
from supervisor.ports import HOST, pick_port, tcp_endpoint
from supervisor.restart import Phase, RestartPolicy, delay_s
from supervisor.restart import counted as restart_counted
from supervisor.spec import (
    MAX_PEERS,
    SupervisorConfig,
    browser_spec,
    node_spec,
    signaling_spec,
    signaling_url,
)
from supervisor.state import SUPERVISOR_LOG, ClusterState, NodeRecord, save_state

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 0.25
HEALTH_INTERVAL_S = 1.0
HEALTH_QUIET_S = 12.0  # an up member heard from this recently (its events) is not asked `id`
HEALTH_TIMEOUT_S = 2.0
STATUS_TIMEOUT_S = 3.0
NODE_COMMAND_TIMEOUT_S = 30.0

__all__ = ["Health", "Member", "Supervisor"]


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
        policy: RestartPolicy | None = None,
    ) -> None:
        self.config = config
        self.launcher = launcher
        # Blocking launchers run in worker threads; the memory launcher runs inline so that test
        # callbacks can touch the event loop.
        self.lifecycle = Lifecycle(
            launcher,
            policy or RestartPolicy(),
            offload=launcher.name != "memory" if offload is None else offload,
            clock=time.monotonic,
            on_change=self.save,
        )
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
        self.placements = Placements(launcher)
        self.curve: CurveKeys | None = None
        """The cluster key pair when the control plane uses CURVE (made by ``start``)."""
        self.guard: Guard | None = None
        self.front_endpoint = ""
        self.events_endpoint = ""
        self.metrics_url = ""
        self.signaling_url = ""
        self.lab = ClusterLab(config, config.lab) if config.lab is not None else None

    # -- helpers -------------------------------------------------------------------------------

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
            curve_key=str(self.config.curve_key_path) if self.curve is not None else None,
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
        self.signaling_url = signaling_url(sig_port, cfg.host)

        if cfg.curved:  # a fresh cluster key pair at every start (control.curve)
            self.curve = CurveKeys.generate()
            self.curve.save(cfg.curve_key_path)
            self.guard = Guard(self.ctx, self.curve)
            self.guard.start()
        self._pub = self.ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        self._pub.setsockopt(zmq.MAXMSGSIZE, SUBSCRIPTION_MAX_BYTES)
        if self.guard is not None:
            self.guard.protect(self._pub, f"event endpoint {self.events_endpoint}")
        self._pub.bind(self.events_endpoint)
        self._front = front_server(
            self.ctx, self.front_endpoint, self.handle_request, guard=self.guard
        )
        self._front.bind()
        try:
            self.metrics.serve(HOST, metrics_port)
        except OSError as exc:
            log.warning("metrics exporter not started on port %d: %s", metrics_port, exc)
            self.metrics_url = ""
        self.save()
        self._tasks.append(asyncio.create_task(self._front.serve(), name="front"))

        if self.lab is None:
            self.signaling = Member(signaling_spec(cfg, sig_port))
        else:
            await self.lab.build()
            self.signaling_url = self.lab.signaling_url
            self.signaling = Member(
                signaling_spec(cfg, NATLAB_SIGNALING_PORT, self.lab.signaling_place())
            )
        await self.lifecycle.start(self.signaling)
        for index in range(1, cfg.peers + 1):
            await self._add_peer(index)
        for index in range(cfg.peers + 1, cfg.peers + cfg.browser_peers + 1):
            await self._add_peer(index, browser=True)
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

    async def _add_peer(self, index: int, browser: bool = False) -> Member:
        if self.lab is not None:
            control, events = self.lab.endpoints(index)
            place = self.lab.peer_place(index)
            spec = node_spec(self.config, index, self.signaling_url, control, events, place)
        else:
            control = events = ""
            if not self.placements.active:  # else: known once the backend has placed the peer
                control = tcp_endpoint(pick_port(0, self._taken_ports))
                events = tcp_endpoint(pick_port(0, self._taken_ports))
            make_spec = browser_spec if browser else node_spec
            spec = make_spec(self.config, index, self.signaling_url, control, events)
        member = Member(spec)
        member.kind = "browser" if browser else "node"
        if control:
            self._connect(member, control, events)
        self.peers[index] = member
        await self.lifecycle.start(member)
        await self._follow(member)
        return member

    def _connect(self, member: Member, control: str, events: str) -> None:
        """The member's control client and event subscription (CURVE when the cluster has it)."""
        member.control, member.events = control, events
        member.client = AsyncControlClient(
            control, NODE_COMMAND_TIMEOUT_S, context=self.ctx, curve=self.curve
        )
        sub = self.ctx.socket(zmq.SUB)
        if self.curve is not None:
            curve_client(sub, self.curve)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_BYTES)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(events)
        member.sub = sub
        member.forwarder = asyncio.create_task(
            self._forward_events(member), name=f"events-{member.index}"
        )

    async def _disconnect(self, member: Member) -> None:
        if member.forwarder is not None:
            member.forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await member.forwarder
        if member.sub is not None:
            member.sub.close(linger=0)
        if member.client is not None:
            await member.client.close()
        member.forwarder = member.sub = member.client = None

    async def _follow(self, member: Member) -> None:
        """Point the member's client at where the backend runs it now (Swarm may move it)."""
        moved = await self.placements.moved(member)
        if moved is not None:
            await self._disconnect(member)
            self._connect(member, *moved)
            self.save()

    async def _dispose_peer(self, member: Member) -> None:
        await self._disconnect(member)
        self.placements.forget(member.index)
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
        self.lifecycle.closing = True  # from here on nothing starts
        self.save()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        peers = list(self.peers.values())
        await asyncio.gather(*(self.lifecycle.stop(m) for m in peers), return_exceptions=True)
        if self.signaling is not None:
            await self.lifecycle.stop(self.signaling)
        for member in peers:
            await self._dispose_peer(member)
        close_launcher = getattr(self.launcher, "close", None)  # the process backend's zygote
        if callable(close_launcher):
            await asyncio.to_thread(close_launcher)
        if self.lab is not None:
            try:
                await self.lab.teardown()
            except LaunchError as exc:
                log.error("%s", exc)
        if self._front is not None:
            await self._front.close()
        if self._pub is not None:
            self._pub.close(linger=0)
        if self.guard is not None:
            await self.guard.close()
        self.metrics.close()
        self._status = "stopped"
        self.save()
        self.ctx.destroy(linger=0)

    # -- supervision ---------------------------------------------------------------------------

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL_S)
            try:
                await self._monitor_once()
            except Exception:
                log.exception("monitor pass failed")

    async def _monitor_once(self) -> None:
        for obs in await self.lifecycle.poll(self.members()):
            self._count_engine_restarts(obs)
            if obs.state is MemberState.RUNNING or not await self.lifecycle.on_exit(obs):
                continue
            member = obs.member
            self._update_metrics()
            if member.restart.phase is Phase.GAVE_UP:
                log.error(
                    "%s %d exited (code %s) %d times in a row; not restarting it again",
                    member.role,
                    member.index,
                    obs.exit_code,
                    member.restart.crashes_in_row,
                )
                continue
            log.warning(
                "%s %d exited (%s, code %s) after %.1f s; restarting in %.1f s",
                member.role,
                member.index,
                obs.state,
                obs.exit_code,
                member.restart.last_ran_s,
                delay_s(member.restart, time.monotonic()) or 0.0,
            )
        for member in self.members():
            if await self.lifecycle.restart_if_due(member):
                self._publish_own(
                    "cluster.node_restarted",
                    member,
                    exit_code=member.last_exit_code,
                    restarts=member.restarts,
                )
                self._update_metrics()

    def _count_engine_restarts(self, obs: Observation) -> None:
        member = obs.member
        if obs.engine_restarts is None or obs.generation != member.generation:
            return
        if obs.engine_restarts > member.engine_restarts_seen:
            member.restart = restart_counted(
                member.restart, obs.engine_restarts - member.engine_restarts_seen
            )
            member.engine_restarts_seen = obs.engine_restarts
            # A new process behind the same endpoints: up again once it answers (the events
            # heard from the old one say nothing about it).
            member.health = Health.STARTING
            member.heard_at = 0.0
            self._publish_own(
                "cluster.node_restarted", member, exit_code=None, restarts=member.restarts
            )
            self._update_metrics()
            self.save()

    @staticmethod
    def _is_down(member: Member) -> bool:
        return member.health is Health.DOWN

    async def _check_health(self, member: Member) -> None:
        if member.client is None or member.health is Health.DOWN or member.stopping:
            return
        if member.health is Health.UP and time.monotonic() - member.heard_at < HEALTH_QUIET_S:
            return  # its events (node.stats every few seconds) say it is alive and serving
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
            if self.placements.active:
                await asyncio.gather(*(self._follow(m) for m in peers), return_exceptions=True)
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
            member.heard_at = time.monotonic()
            payload["index"] = member.index
            self._publish(topic, payload)
            if topic == "node.stats":
                self.metrics.observe_stats(member.index, payload)
            node = payload.get("node")
            if isinstance(node, str) and member.node_id != node:
                member.node_id = node
                self.save()  # cluster.json must not keep "id": null for a running peer

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
            "kind": member.kind,
            "id": member.node_id,
            "control": member.control,
            "events": member.events,
            "ref": member.handle.ref if member.handle else None,
            "peers": None,
            "rt": None,
            "restarts": member.restarts,
            "health": str(member.health),
        }
        entry.update(self.placements.status(member.index))
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
        if self.lab is not None and target > len(self.lab.plan.hosts):
            raise CommandError(ErrorCode.BAD_ARGS, "a NAT lab cluster cannot grow (down, then up)")
        async with self._scale_lock:
            added, removed = [], []
            current = len(self.peers)
            for index in range(current + 1, target + 1):
                await self._add_peer(index)
                added.append(index)
            for index in range(current, target, -1):
                member = self.peers[index]
                await self.lifecycle.stop(member)
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
        handle = await self.lifecycle.kill(member)
        if handle is None:
            raise CommandError(ErrorCode.NODE_UNAVAILABLE, f"member {member.index} is down")
        return {"index": member.index, "killed": True, "ref": handle.ref}

    async def _cmd_restart(self, req: Request) -> dict[str, Any]:
        member = self._member_arg(req)
        code = await self.lifecycle.restart(member)
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
