"""The node's control server: commands on a ROUTER socket, events on a PUB socket.

Theory of operation:
- Clients are REQ sockets (or DEALERs that send the same envelope). The ROUTER receives
  ``[identity..., b"", body]``; every request runs in its own task and its reply is sent as
  ``[identity..., b"", reply]`` when ready, so a slow command (a lookup) never blocks the loop
  or other clients. At most ``max_inflight`` requests run at once; beyond that the receive loop
  waits (back-pressure through ZeroMQ's queues).
- Invariant: every request that reaches ``handle`` gets exactly one reply, whatever its
  content. Protocol errors map to ``bad_request`` / ``unsupported_version`` / ``unknown_command``
  / ``bad_args`` / ``too_large``; a ``CommandError`` from the API keeps its code; any other
  exception is logged with its traceback and answered ``internal`` — the node stays up.
- Frames above ``HARD_MAX_FRAME_BYTES`` make ZeroMQ drop the connection (no reply is possible
  then); frames between ``MAX_REQUEST_BYTES`` and that get ``too_large``.
- The envelope's ``node`` field (a supervisor concept) is accepted and ignored here.
- ``publish`` never blocks: PUB drops events for slow subscribers.

``dispatch`` is the override point for a server that routes requests elsewhere (the supervisor
front endpoint speaks the same protocol).

``python -m control.server --fake`` runs a server over ``FakeNodeAPI`` (tests, benchmarks) and
prints its bound endpoints as one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import zmq
import zmq.asyncio

from control.api import NodeAPI
from control.codec import CodecError, pack, unpack
from control.errors import CommandError
from control.schema import (
    COMMANDS,
    MAX_REQUEST_BYTES,
    ErrorCode,
    Request,
    SchemaError,
    error_reply,
    help_result,
    ok_reply,
    parse_request,
    request_id_of,
    validate_args,
)

log = logging.getLogger(__name__)

HARD_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_INFLIGHT: Final = 256


class ControlServer:
    def __init__(
        self,
        api: NodeAPI,
        control_endpoint: str,
        events_endpoint: str,
        *,
        node_id: str | None = None,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        self.api = api
        self.node_id = node_id
        self.control_endpoint = control_endpoint
        """The bound endpoint once started (a ``*`` or ``0`` port replaced by the real one)."""
        self.events_endpoint = events_endpoint
        self.requests_served = 0
        self.internal_errors = 0
        self.events_dropped = 0
        self._ctx: zmq.asyncio.Context | None = None
        self._router: zmq.asyncio.Socket | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_inflight)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind both sockets (raises ``zmq.ZMQError`` if an endpoint is taken) and serve."""
        ctx = zmq.asyncio.Context()
        router = ctx.socket(zmq.ROUTER)
        pub: zmq.Socket[bytes] = zmq.Context.shadow(ctx.underlying).socket(zmq.PUB)
        try:
            for sock in (router, pub):
                sock.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.MAXMSGSIZE, HARD_MAX_FRAME_BYTES)
            router.setsockopt(zmq.ROUTER_MANDATORY, 0)
            router.bind(self.control_endpoint)
            pub.bind(self.events_endpoint)
        except zmq.ZMQError:
            router.close(linger=0)
            pub.close(linger=0)
            ctx.term()
            raise
        self.control_endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.events_endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._ctx, self._router, self._pub = ctx, router, pub
        self._loop_task = asyncio.create_task(self._serve_forever(router), name="control-server")
        log.info("control on %s, events on %s", self.control_endpoint, self.events_endpoint)

    async def close(self, linger_ms: int = 0) -> None:
        """Stop serving; cancel running commands; close the sockets (idempotent)."""
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
        if self._router is not None:
            self._router.close(linger=linger_ms)
        if self._pub is not None:
            self._pub.close(linger=linger_ms)
        if self._ctx is not None:
            self._ctx.term()
        self._ctx = self._router = self._pub = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- events ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Send ``[topic, msgpack payload]``; adds ``ts`` (wall ms) and ``node`` when missing."""
        if self._pub is None:
            return
        body = dict(payload)
        body.setdefault("ts", int(time.time() * 1000))
        if self.node_id is not None:
            body.setdefault("node", self.node_id)
        try:
            data = pack(body)
            self._pub.send_multipart([topic.encode("utf-8"), data], flags=zmq.NOBLOCK)
        except (CodecError, zmq.ZMQError, UnicodeEncodeError) as exc:
            self.events_dropped += 1
            log.warning("event %r dropped: %s", topic, exc)

    # -- requests ----------------------------------------------------------------------------

    async def _serve_forever(self, router: zmq.asyncio.Socket) -> None:
        while True:
            frames = await router.recv_multipart()
            await self._slots.acquire()
            task = asyncio.create_task(self._serve_one(router, frames))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("control request task failed", exc_info=task.exception())

    async def _serve_one(self, router: zmq.asyncio.Socket, frames: list[bytes]) -> None:
        try:
            split = frames.index(b"") + 1
        except ValueError:
            split = 1  # a DEALER without the REQ delimiter: [identity, body...]
        envelope, body = frames[:split], frames[split:]
        reply = await self.handle(body)
        self.requests_served += 1
        try:
            await router.send_multipart([*envelope, reply])
        except zmq.ZMQError as exc:
            log.warning("control reply not sent: %s", exc)

    async def handle(self, body: list[bytes]) -> bytes:
        """Turn the body frames of one request into the encoded reply. Never raises."""
        rid: int | str | None = None
        try:
            if len(body) != 1:
                raise SchemaError(
                    ErrorCode.BAD_REQUEST, f"a request is exactly one frame, got {len(body)}"
                )
            if len(body[0]) > MAX_REQUEST_BYTES:
                raise SchemaError(
                    ErrorCode.TOO_LARGE,
                    f"request is {len(body[0])} bytes, the limit is {MAX_REQUEST_BYTES}",
                )
            try:
                obj = unpack(body[0])
            except CodecError as exc:
                raise SchemaError(ErrorCode.BAD_REQUEST, str(exc)) from exc
            rid = request_id_of(obj)
            request = parse_request(obj)
            result = await self.dispatch(request)
            reply = ok_reply(rid, result)
        except SchemaError as exc:
            reply = error_reply(rid, exc.code, exc.message)
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

    async def dispatch(self, request: Request) -> Mapping[str, Any]:
        """Validate the arguments and call the API (override to route requests elsewhere)."""
        spec = COMMANDS.get(request.cmd)
        if spec is None:
            raise SchemaError(
                ErrorCode.UNKNOWN_COMMAND, f"unknown command {request.cmd!r} (try 'help')"
            )
        kwargs = validate_args(spec, request.args)
        if spec.name == "help":
            return help_result()
        result = await getattr(self.api, spec.name)(**kwargs)
        if not isinstance(result, Mapping):
            raise TypeError(f"{spec.name} returned {type(result).__name__}, not a map")
        return result


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
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self.server = ControlServer(api, control_endpoint, events_endpoint, node_id=node_id)
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


async def _run_fake(control: str, events: str) -> None:
    import json
    import signal
    import sys

    from control.api import FakeNodeAPI

    api = FakeNodeAPI()
    server = ControlServer(api, control, events, node_id=api.node_id)
    await server.start()
    print(
        json.dumps({"control": server.control_endpoint, "events": server.events_endpoint}),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shutdown = asyncio.create_task(api.shutdown_requested.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({shutdown, stopped}, return_when=asyncio.FIRST_COMPLETED)
    shutdown.cancel()
    stopped.cancel()
    await server.close(linger_ms=100)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m control.server")
    parser.add_argument("--fake", action="store_true", required=True, help="serve FakeNodeAPI")
    parser.add_argument("--control", default="tcp://127.0.0.1:*")
    parser.add_argument("--events", default="tcp://127.0.0.1:*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_run_fake(args.control, args.events))


if __name__ == "__main__":
    main()
