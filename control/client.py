"""Clients of the control plane: commands (sync and asyncio) and event subscriptions.

Theory of operation:
- ``ControlClient`` (sync) uses one REQ socket. REQ enforces send/recv alternation, so after a
  timeout the socket is closed (linger 0) and a fresh one is created for the next call.
- ``AsyncControlClient`` uses one DEALER socket that speaks the REQ envelope (empty delimiter
  frame + body). Requests carry unique ids and a background task routes each reply to the
  waiting call, so many calls can be in flight at once (the supervisor forwards concurrent
  commands to a node through one client). A timed-out call just forgets its id; a late reply
  is dropped.
- Both set ZMQ_IMMEDIATE, so a request is only queued on a completed connection, and watch a
  socket monitor: a refused connection raises ``Unreachable`` at once instead of waiting for the
  whole timeout. A connected server that does not answer in time raises ``Timeout``.
- ``EventSubscriber`` / ``AsyncEventSubscriber`` wrap a SUB socket and yield ``(topic, payload)``
  for events ``[topic bytes, msgpack map]``; malformed events are skipped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from typing import Any, Final, Generic, Self, TypeVar

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message, recv_monitor_message

from control.codec import CodecError, pack, unpack
from control.curve import CurveKeys, curve_client
from control.errors import ProtocolError, RemoteError, Timeout, Unreachable
from control.schema import PROTOCOL_VERSION

DEFAULT_TIMEOUT_S: Final = 5.0
MAX_REPLY_BYTES: Final = 64 * 1024 * 1024
MAX_EVENT_BYTES: Final = 4 * 1024 * 1024
SEND_RETRY_S: Final = 0.001
_MONITOR_EVENTS: Final = zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED

R = TypeVar("R")

NodeSelector = int | str | None
"""``node`` field of the envelope: ``None`` (absent), an index ``>= 1``, or ``"all"``."""


class ClosesOnExit:
    """``with obj:`` closes ``obj`` when the block ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def build_request(
    rid: int, cmd: str, args: Mapping[str, Any] | None, node: NodeSelector
) -> dict[str, Any]:
    req: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": rid, "cmd": cmd, "args": dict(args or {})}
    if node is not None:
        req["node"] = node
    return req


def parse_reply(data: bytes, expected_id: int | None = None) -> dict[str, Any]:
    """Decode a reply; return its result or raise ``RemoteError`` / ``ProtocolError``."""
    try:
        reply = unpack(data, MAX_REPLY_BYTES)
    except CodecError as exc:
        raise ProtocolError(f"undecodable reply: {exc}") from exc
    return result_of(reply, expected_id)


def result_of(reply: object, expected_id: int | None = None) -> dict[str, Any]:
    """A decoded reply's result, or raise ``RemoteError`` / ``ProtocolError``."""
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ProtocolError("reply is not a map with a boolean 'ok'")
    if expected_id is not None and reply.get("id") not in (expected_id, None):
        raise ProtocolError(f"reply id {reply.get('id')!r} does not match request {expected_id}")
    if reply["ok"]:
        result = reply.get("result")
        if not isinstance(result, dict):
            raise ProtocolError("ok reply without a 'result' map")
        return result
    error = reply.get("error")
    if not isinstance(error, dict):
        raise ProtocolError("error reply without an 'error' map")
    details = error.get("details")
    raise RemoteError(
        str(error.get("code", "internal")),
        str(error.get("message", "")),
        details if isinstance(details, dict) else None,
    )


Sock = TypeVar("Sock", zmq.Socket[bytes], zmq.asyncio.Socket)


def _connect_monitored(
    sock: Sock, endpoint: str, curve: CurveKeys | None = None
) -> tuple[Sock, Sock]:
    """``sock`` connected to ``endpoint`` (queueing only on a completed connection, which with
    CURVE means a completed handshake), and the monitor socket that reports refused
    connections."""
    if curve is not None:
        curve_client(sock, curve)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
    monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        _close_monitored(sock, monitor)
        raise Unreachable(f"invalid endpoint {endpoint!r}: {exc}") from exc
    return sock, monitor


def _close_monitored(sock: Sock | None, monitor: Sock | None) -> None:
    if sock is not None:
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        sock.close(linger=0)
    if monitor is not None:
        monitor.close(linger=0)


class _Requests(Generic[R]):
    """What both clients share: request ids, the envelope, ``request`` and ``call``.

    ``R`` is the result map for the blocking client and an awaitable of it for the asyncio one;
    each implements ``_exchange`` (send one encoded request, wait for its reply)."""

    def __init__(self, endpoint: str, timeout_s: float, curve: CurveKeys | None) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.curve = curve
        self._ids = itertools.count(1)

    def request(
        self,
        cmd: str,
        args: Mapping[str, Any] | None = None,
        *,
        node: NodeSelector = None,
        timeout_s: float | None = None,
    ) -> R:
        """Send one command and wait for its result."""
        rid = next(self._ids)
        body = pack(build_request(rid, cmd, args, node))
        return self._exchange(rid, body, self.timeout_s if timeout_s is None else timeout_s)

    def call(self, cmd: str, node: NodeSelector = None, **args: Any) -> R:
        """``call("store", key="k", value=b"v")``; ``node`` is the envelope's node selector."""
        return self.request(cmd, args, node=node)

    def _exchange(self, rid: int, body: bytes, limit_s: float) -> R:
        raise NotImplementedError


class ControlClient(_Requests[dict[str, Any]], ClosesOnExit):
    """Blocking client: ``call("get", key="k") -> result map``. Not thread-safe."""

    def __init__(
        self,
        endpoint: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        super().__init__(endpoint, timeout_s, curve)
        self._ctx = context if context is not None else zmq.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._connected = False

    def _open(self) -> zmq.Socket[bytes]:
        if self._sock is not None:
            return self._sock
        self._sock, self._monitor = _connect_monitored(
            self._ctx.socket(zmq.REQ), self.endpoint, self.curve
        )
        self._connected = False
        return self._sock

    def _reset(self) -> None:
        _close_monitored(self._sock, self._monitor)
        self._sock = None
        self._monitor = None
        self._connected = False

    def _drain_monitor(self) -> bool:
        """Read pending monitor events; return True when a connection attempt was refused."""
        refused = False
        assert self._monitor is not None
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                self._connected, refused = True, False
            elif event == zmq.EVENT_CONNECT_RETRIED:
                refused = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected = False
        return refused

    def _wait_writable(self, sock: zmq.Socket[bytes], deadline: float) -> None:
        if sock.poll(0, zmq.POLLOUT):
            return
        assert self._monitor is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLOUT)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            if self._drain_monitor() and not sock.poll(0, zmq.POLLOUT):
                self._reset()
                raise Unreachable(f"no control server at {self.endpoint} (connection refused)")
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                self._reset()
                raise Unreachable(f"could not connect to {self.endpoint} in time")
            ready = dict(poller.poll(remaining_ms))
            if ready.get(sock, 0) & zmq.POLLOUT:
                return

    def _exchange(self, rid: int, body: bytes, limit_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + limit_s
        sock = self._open()
        self._wait_writable(sock, deadline)
        try:
            sock.send(body, zmq.NOBLOCK)
        except zmq.Again as exc:
            self._reset()
            raise Unreachable(f"could not send to {self.endpoint}") from exc
        remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if not sock.poll(remaining_ms, zmq.POLLIN):
            self._reset()
            raise Timeout(f"no reply from {self.endpoint} within {limit_s:g} s")
        frames = sock.recv_multipart()
        return parse_reply(frames[-1], rid)

    def close(self) -> None:
        self._reset()


class AsyncControlClient(_Requests[Awaitable[dict[str, Any]]]):
    """asyncio client; concurrent calls are multiplexed on one DEALER socket.

    The DEALER and its monitor are plain ZeroMQ sockets watched with ``loop.add_reader`` on their
    (edge-triggered) ``ZMQ_FD``: replies are read with NOBLOCK and decoded once in the reader
    callback, requests are sent with NOBLOCK — no ``zmq.asyncio`` poller per message."""

    def __init__(
        self,
        endpoint: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        context: zmq.asyncio.Context | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        super().__init__(endpoint, timeout_s, curve)
        self._ctx = context if context is not None else zmq.asyncio.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._fds: list[int] = []
        self._pending: dict[int, asyncio.Future[object]] = {}
        self._connected = asyncio.Event()
        self._refused = asyncio.Event()
        self._closed = False

    def _open(self) -> zmq.Socket[bytes]:
        if self._closed:
            raise RuntimeError("client is closed")
        if self._sock is not None:
            return self._sock
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(self._ctx.underlying)
        sock, monitor = _connect_monitored(ctx.socket(zmq.DEALER), self.endpoint, self.curve)
        self._sock, self._monitor = sock, monitor
        loop = asyncio.get_running_loop()
        for s, callback in ((sock, self._on_replies), (monitor, self._on_monitor)):
            fd = int(s.getsockopt(zmq.FD))
            loop.add_reader(fd, callback)
            self._fds.append(fd)
        self._on_monitor()
        return sock

    @staticmethod
    def _ready(sock: zmq.Socket[bytes]) -> bool:
        return bool(int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    def _on_monitor(self) -> None:
        monitor = self._monitor
        while monitor is not None and self._ready(monitor):
            event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            if event == zmq.EVENT_CONNECTED:
                self._refused.clear()
                self._connected.set()
            elif event == zmq.EVENT_CONNECT_RETRIED:
                self._refused.set()
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected.clear()

    def _on_replies(self) -> None:
        sock = self._sock
        while sock is not None and self._ready(sock):
            frames = sock.recv_multipart(zmq.NOBLOCK)
            try:
                reply: object = unpack(frames[-1], MAX_REPLY_BYTES)
            except CodecError as exc:
                reply = ProtocolError(f"undecodable reply: {exc}")
            rid = reply.get("id") if isinstance(reply, dict) else None
            fut = self._pending.get(rid) if isinstance(rid, int) else None
            if fut is not None and not fut.done():
                fut.set_result(reply)

    async def _wait_connected(self) -> None:
        if self._connected.is_set():
            return
        connected = asyncio.ensure_future(self._connected.wait())
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            await asyncio.wait({connected, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
            refused.cancel()
        if not self._connected.is_set():
            raise Unreachable(f"no control server at {self.endpoint} (connection refused)")

    async def _send(self, sock: zmq.Socket[bytes], body: bytes) -> None:
        while True:
            try:
                sock.send_multipart([b"", body], zmq.NOBLOCK)
                break
            except zmq.Again:
                await asyncio.sleep(SEND_RETRY_S)  # above the high-water mark: rare
        # The FD is edge-triggered: a reply that arrived during the send must not wait.
        asyncio.get_running_loop().call_soon(self._on_replies)

    async def _exchange(self, rid: int, body: bytes, limit_s: float) -> dict[str, Any]:
        sock = self._open()
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            try:
                async with asyncio.timeout(limit_s):
                    await self._wait_connected()
            except TimeoutError as exc:
                raise Unreachable(f"could not connect to {self.endpoint} in time") from exc
            try:
                async with asyncio.timeout(max(0.0, limit_s)):
                    await self._send(sock, body)
                    reply = await fut
            except TimeoutError as exc:
                raise Timeout(f"no reply from {self.endpoint} within {limit_s:g} s") from exc
        finally:
            self._pending.pop(rid, None)
        if isinstance(reply, ProtocolError):
            raise reply
        return result_of(reply, rid)

    async def close(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        for fd in self._fds:
            loop.remove_reader(fd)
        self._fds.clear()
        _close_monitored(self._sock, self._monitor)
        self._sock = self._monitor = None
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def decode_event(frames: Sequence[bytes]) -> tuple[str, dict[str, Any]] | None:
    """``[topic, msgpack map]`` -> ``(topic, payload)``; ``None`` when malformed."""
    if len(frames) != 2:
        return None
    try:
        topic = frames[0].decode("utf-8")
        payload = unpack(frames[1], MAX_EVENT_BYTES)
    except (UnicodeDecodeError, CodecError):
        return None
    if not isinstance(payload, dict):
        return None
    return topic, payload


def _subscribed(
    sock: Sock, endpoint: str, topics: Sequence[str] | None, curve: CurveKeys | None = None
) -> Sock:
    """``sock`` (a new SUB socket) subscribed to the ``topics`` prefixes and connected."""
    if curve is not None:
        curve_client(sock, curve)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_BYTES)
    for prefix in topics or [""]:
        sock.setsockopt(zmq.SUBSCRIBE, prefix.encode("utf-8"))
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise Unreachable(f"invalid endpoint {endpoint!r}: {exc}") from exc
    return sock


class EventSubscriber(ClosesOnExit):
    """Blocking iterator over ``(topic, payload)`` of events whose topic has a given prefix."""

    def __init__(
        self,
        endpoint: str,
        topics: Sequence[str] | None = None,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.dropped = 0
        ctx = context if context is not None else zmq.Context.instance()
        self._sock = _subscribed(ctx.socket(zmq.SUB), endpoint, topics, curve)

    def recv(self, timeout_s: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next well-formed event, or ``None`` after ``timeout_s`` (forever when None)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if deadline is not None:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0 or not self._sock.poll(remaining_ms):
                    return None
            event = decode_event(self._sock.recv_multipart())
            if event is not None:
                return event
            self.dropped += 1

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            event = self.recv()
            if event is not None:
                yield event

    def close(self) -> None:
        self._sock.close(linger=0)


class AsyncEventSubscriber:
    """``async for topic, payload in AsyncEventSubscriber(endpoint, ["peer."])``."""

    def __init__(
        self,
        endpoint: str,
        topics: Sequence[str] | None = None,
        *,
        context: zmq.asyncio.Context | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.dropped = 0
        ctx = context if context is not None else zmq.asyncio.Context.instance()
        self._sock = _subscribed(ctx.socket(zmq.SUB), endpoint, topics, curve)

    async def recv(self) -> tuple[str, dict[str, Any]]:
        while True:
            event = decode_event(await self._sock.recv_multipart())
            if event is not None:
                return event
            self.dropped += 1

    async def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        while True:
            yield await self.recv()

    def close(self) -> None:
        self._sock.close(linger=0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
