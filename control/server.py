"""The control plane's server: the envelope on a ROUTER socket, and the node's control server.

``RouterServer`` is the one implementation of the request/reply side, used by the node's
``ControlServer`` (dispatching to a ``NodeAPI``) and by the supervisor's front endpoint
(dispatching to the cluster or routing to node i / all, ``supervisor.front``).

Theory of operation:
- Clients are REQ sockets (or DEALERs that send the same envelope). The ROUTER receives
  ``[identity..., b"", body]``; every request runs in its own task and its reply is sent as
  ``[identity..., b"", reply]`` when ready, so a slow command (a lookup, a slow node behind the
  supervisor) never blocks the loop or other clients. At most ``max_inflight`` requests run at
  once; beyond that the receive loop waits (back-pressure through ZeroMQ's queues).
- Invariant: every request that reaches ``handle`` gets exactly one reply, whatever its
  content. Protocol errors map to ``bad_request`` / ``unsupported_version`` / ``unknown_command``
  / ``bad_args`` / ``too_large``; a ``CommandError`` from the dispatcher keeps its code; any other
  exception is logged with its traceback and answered ``internal`` — the server stays up.
- Frames above ``max_frame_bytes`` (``MAXMSGSIZE``) make ZeroMQ drop the connection before it
  buffers them (no reply is possible then); frames between ``MAX_REQUEST_BYTES`` and that get
  ``too_large``. ``MAXMSGSIZE`` bounds each *frame*: libzmq has no limit on the number of
  frames of one multipart message, which it buffers whole before the ROUTER sees it. A client
  that sends many frames just under the limit can still make the node buffer them (it is then
  refused with ``bad_request``): with CURVE on (``control.curve``) only key holders can.
- The envelope's ``node`` field (a supervisor concept) is accepted and ignored by a node.
- ``ControlServer.publish`` never blocks: PUB drops events for slow subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import zmq
import zmq.asyncio

from control.codec import CodecError, pack, unpack
from control.commands import COMMANDS, NodeAPI, help_result
from control.curve import CurveKeys, Guard
from control.errors import CommandError, ErrorCode
from control.limits import NODE_MAX_FRAME_BYTES, SUBSCRIPTION_MAX_BYTES
from control.schema import (
    MAX_REQUEST_BYTES,
    Request,
    error_reply,
    ok_reply,
    parse_request,
    request_id_of,
    validate_args,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_INFLIGHT: Final = 256
EVENT_FLUSH_DELAY_S: Final = 0.002
MAX_EVENT_BATCH: Final = 64

Dispatch = Callable[[Request], Awaitable[Mapping[str, Any]]]
"""Answers one request with its result map, or raises ``CommandError``."""


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """ROUTER frames -> (routing prefix to echo, body frames).

    A REQ client's prefix ends with the empty delimiter; a DEALER without it sends
    ``[identity, body...]``."""
    try:
        split = frames.index(b"") + 1
    except ValueError:
        split = 1
    return frames[:split], frames[split:]


def decode_body(body: list[bytes]) -> object:
    """The body frames of one request -> the decoded msgpack object. Raises ``CommandError``."""
    if len(body) != 1:
        raise CommandError(
            ErrorCode.BAD_REQUEST, f"a request is exactly one frame, got {len(body)}"
        )
    if len(body[0]) > MAX_REQUEST_BYTES:
        raise CommandError(
            ErrorCode.TOO_LARGE,
            f"request is {len(body[0])} bytes, the limit is {MAX_REQUEST_BYTES}",
        )
    try:
        return unpack(body[0])
    except CodecError as exc:
        raise CommandError(ErrorCode.BAD_REQUEST, str(exc)) from exc


def api_dispatch(api: NodeAPI) -> Dispatch:
    """Validate the arguments against the command table and call the ``NodeAPI`` method."""

    async def dispatch(request: Request) -> Mapping[str, Any]:
        spec = COMMANDS.get(request.cmd)
        if spec is None:
            raise CommandError(
                ErrorCode.UNKNOWN_COMMAND, f"unknown command {request.cmd!r} (try 'help')"
            )
        kwargs = validate_args(spec, request.args)
        if spec.name == "help":
            return help_result()
        result = await getattr(api, spec.name)(**kwargs)
        if not isinstance(result, Mapping):
            raise TypeError(f"{spec.name} returned {type(result).__name__}, not a map")
        return result

    return dispatch


class RouterServer:
    """The request/reply envelope on one ROUTER socket; ``dispatch`` answers each request.

    The socket is a plain (blocking-API) ZeroMQ socket driven by ``loop.add_reader`` on its
    ``ZMQ_FD``, not a ``zmq.asyncio`` socket: requests are read with NOBLOCK in the reader
    callback and a reply is sent with NOBLOCK the moment it is ready (a ROUTER never blocks on
    send: it drops for a peer above its high-water mark). That saves the futures and the extra
    loop iterations ``zmq.asyncio`` spends on every receive and send. ``ZMQ_FD`` is
    edge-triggered: after any send or receive the socket's ``EVENTS`` are checked again, so a
    request that arrived meanwhile is never left unread."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        dispatch: Dispatch,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_frame_bytes: int = NODE_MAX_FRAME_BYTES,
        guard: Guard | None = None,
    ) -> None:
        self.endpoint = endpoint
        """The bound endpoint once bound (a ``*`` or ``0`` port replaced by the real one)."""
        self.dispatch = dispatch
        self.requests_served = 0
        self.internal_errors = 0
        self._ctx = ctx
        self._max_frame_bytes = max_frame_bytes
        self._max_inflight = max_inflight
        self._guard = guard
        self._sock: zmq.Socket[bytes] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = False
        self._check_scheduled = False
        self._unwatch: Callable[[], object] | None = None

    def bind(self) -> str:
        """Bind the ROUTER (raises ``zmq.ZMQError`` if the endpoint is taken)."""
        sock: zmq.Socket[bytes] = zmq.Context.shadow(self._ctx.underlying).socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_frame_bytes)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
            if self._guard is not None:
                self._guard.protect(sock, f"control socket {self.endpoint}")
            sock.bind(self.endpoint)
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def start(self) -> None:
        """Serve in a background task (``bind`` first)."""
        self._loop_task = asyncio.create_task(self.serve(), name=f"router {self.endpoint}")

    async def serve(self) -> None:
        """Receive requests until cancelled, each answered in its own task."""
        sock = self._sock
        assert sock is not None, "bind() first"
        loop = asyncio.get_running_loop()
        fd = int(sock.getsockopt(zmq.FD))
        loop.add_reader(fd, self._readable)
        self._reading = True
        self._unwatch = lambda: loop.remove_reader(fd)
        try:
            self._readable()
            await loop.create_future()  # forever: the reader callback does the work
        finally:
            self._stop_reading()

    def _stop_reading(self) -> None:
        self._reading = False
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()

    def _readable(self) -> None:
        """Read every waiting request (up to ``max_inflight`` running at once)."""
        self._check_scheduled = False
        sock = self._sock
        if sock is None or not self._reading:
            return
        while len(self._tasks) < self._max_inflight:
            try:
                if not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                    return
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                log.warning("control socket receive failed: %s", exc)
                return
            task = asyncio.get_running_loop().create_task(self._serve_one(sock, frames))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _recheck(self) -> None:
        """Look at the socket again soon (edge-triggered FD; a slot may have freed)."""
        if not self._check_scheduled and self._reading:
            self._check_scheduled = True
            asyncio.get_running_loop().call_soon(self._readable)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("control request task failed", exc_info=task.exception())
        self._recheck()

    async def _serve_one(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        routing, body = split_envelope(frames)
        reply = await self.handle(body)
        self.requests_served += 1
        if self._sock is not sock:
            return  # closed meanwhile
        try:
            sock.send_multipart([*routing, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("control reply not sent: %s", exc)

    async def handle(self, body: list[bytes]) -> bytes:
        """Turn the body frames of one request into the encoded reply. Never raises."""
        rid: int | str | None = None
        try:
            obj = decode_body(body)
            rid = request_id_of(obj)
            reply = ok_reply(rid, await self.dispatch(parse_request(obj)))
        except CommandError as exc:
            reply = error_reply(rid, exc.code, exc.message, exc.details)
        except Exception as exc:
            self.internal_errors += 1
            log.exception("control command failed")
            reply = error_reply(rid, ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")
        try:
            return pack(reply)
        except CodecError as exc:
            self.internal_errors += 1
            log.error("control reply could not be encoded: %s", exc)
            return pack(error_reply(rid, ErrorCode.INTERNAL, "internal error: unencodable result"))

    async def close(self, linger_ms: int = 0) -> None:
        """Stop serving; cancel running requests; close the socket (idempotent)."""
        self._stop_reading()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close(linger=linger_ms)
            self._sock = None


class ControlServer:
    """A node's control plane: commands (``RouterServer`` over ``api``) and events (PUB)."""

    def __init__(
        self,
        api: NodeAPI,
        control_endpoint: str,
        events_endpoint: str,
        *,
        node_id: str | None = None,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        dispatch: Dispatch | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.api = api
        self.curve = curve
        """The cluster key pair: when set, both sockets are CURVE servers (``control.curve``)."""
        self.guard: Guard | None = None
        self.node_id = node_id
        self.control_endpoint = control_endpoint
        """The bound endpoint once started (a ``*`` or ``0`` port replaced by the real one)."""
        self.events_endpoint = events_endpoint
        self.events_dropped = 0
        self._dispatch = dispatch or api_dispatch(api)
        self._max_inflight = max_inflight
        self._ctx: zmq.asyncio.Context | None = None
        self._router: RouterServer | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._queued: list[tuple[str, dict[str, Any]]] = []
        self._flush: asyncio.TimerHandle | None = None

    @property
    def requests_served(self) -> int:
        return self._router.requests_served if self._router is not None else 0

    @property
    def internal_errors(self) -> int:
        return self._router.internal_errors if self._router is not None else 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind both sockets (raises ``zmq.ZMQError`` if an endpoint is taken) and serve."""
        ctx = zmq.asyncio.Context()
        guard = None if self.curve is None else Guard(ctx, self.curve)
        router = RouterServer(
            ctx,
            self.control_endpoint,
            self._dispatch,
            max_inflight=self._max_inflight,
            guard=guard,
        )
        pub: zmq.Socket[bytes] = zmq.Context.shadow(ctx.underlying).socket(zmq.PUB)
        try:
            pub.setsockopt(zmq.LINGER, 0)
            pub.setsockopt(zmq.MAXMSGSIZE, SUBSCRIPTION_MAX_BYTES)
            if guard is not None:
                guard.start()
                guard.protect(pub, f"event socket {self.events_endpoint}")
            router.bind()
            pub.bind(self.events_endpoint)
        except zmq.ZMQError:
            await router.close()
            pub.close(linger=0)
            if guard is not None:
                await guard.close()
            ctx.term()
            raise
        self.guard = guard
        self.control_endpoint = router.endpoint
        self.events_endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._ctx, self._router, self._pub = ctx, router, pub
        router.start()
        log.info("control on %s, events on %s", self.control_endpoint, self.events_endpoint)

    async def close(self, linger_ms: int = 0) -> None:
        """Stop serving; cancel running commands; close the sockets (idempotent)."""
        if self._router is not None:
            await self._router.close(linger_ms)
        self._flush_events()
        if self._pub is not None:
            self._pub.close(linger=linger_ms)
        if self.guard is not None:
            await self.guard.close()
            self.guard = None
        if self._ctx is not None:
            self._ctx.term()
        self._ctx = self._pub = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- events ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Queue ``[topic, msgpack payload]``; adds ``ts`` (wall ms) and ``node`` when missing.

        Events are sent in batches, ``EVENT_FLUSH_DELAY_S`` after the first one queued (or at
        once when ``MAX_EVENT_BATCH`` are waiting): each ZeroMQ send wakes the context's I/O
        thread, and a put makes several events, so sending them one by one on the request path
        cost more than the DHT messages themselves (profile of a node during puts)."""
        if self._pub is None:
            return
        body = dict(payload)
        body.setdefault("ts", int(time.time() * 1000))
        if self.node_id is not None:
            body.setdefault("node", self.node_id)
        self._queued.append((topic, body))
        if len(self._queued) >= MAX_EVENT_BATCH:
            self._flush_events()
        elif self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (sync caller): send now
                self._flush_events()
                return
            self._flush = loop.call_later(EVENT_FLUSH_DELAY_S, self._flush_events)

    def _flush_events(self) -> None:
        """Send every queued event (never blocks: PUB drops for slow subscribers)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        queued, self._queued = self._queued, []
        pub = self._pub
        if pub is None:
            return
        for topic, body in queued:
            try:
                pub.send_multipart([topic.encode("utf-8"), pack(body)], flags=zmq.NOBLOCK)
            except (CodecError, zmq.ZMQError, UnicodeEncodeError) as exc:
                self.events_dropped += 1
                log.warning("event %r dropped: %s", topic, exc)


class ThreadedControlServer:
    """A ``ControlServer`` on its own event loop in a daemon thread, for sync code and tests.

    ``publish`` may be called from any thread (it hops onto the server's loop).
    """

    def __init__(
        self,
        api: NodeAPI,
        control_endpoint: str = "tcp://127.0.0.1:*",
        events_endpoint: str = "tcp://127.0.0.1:*",
        *,
        node_id: str | None = None,
        dispatch: Dispatch | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self.server = ControlServer(
            api, control_endpoint, events_endpoint, node_id=node_id, dispatch=dispatch, curve=curve
        )
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def control_endpoint(self) -> str:
        return self.server.control_endpoint

    @property
    def events_endpoint(self) -> str:
        return self.server.events_endpoint

    def start(self) -> ThreadedControlServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self

    def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        self._loop.call_soon_threadsafe(self.server.publish, topic, dict(payload))

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ThreadedControlServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
