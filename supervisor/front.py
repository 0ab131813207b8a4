"""The supervisor front endpoint: wire format, envelope parsing and the ROUTER server loop.

Wire format (docs/interfaces.md, "Control plane"): one msgpack map per request,
``{"v": 1, "id": int|str, "cmd": str, "args": map, "node": int|"all"}`` (``node`` only here), one
msgpack map per reply, ``{"v": 1, "id", "ok": true, "result"}`` or ``{"v": 1, "id", "ok": false,
"error": {"code", "message", "details"?}}``.

The server is a ROUTER socket that speaks the REQ envelope (``[identity, b"", body]``) and also
accepts DEALER clients that omit the empty delimiter; the reply reuses the request's routing
prefix. Every request is handled in its own task, so a slow node never blocks the others. Nothing
a client sends can crash the loop: garbage gets an error reply (or is dropped when it has no
routing identity at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import zmq
import zmq.asyncio

from control.codec import CodecError, unpack
from control.codec import pack as _pack
from control.schema import (
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    Request,
    SchemaError,
    request_id_of,
)
from control.schema import error_reply as _error_reply
from control.schema import ok_reply as _ok_reply
from control.schema import parse_request as _parse_envelope

log = logging.getLogger(__name__)

__all__ = [
    "MAX_REQUEST_BYTES",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "FrontServer",
    "Request",
    "RequestError",
    "error_reply",
    "ok_reply",
    "pack",
    "parse_request",
    "unpack",
]


def pack(obj: Any) -> bytes:
    return _pack(obj)


def ok_reply(req_id: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    return _ok_reply(req_id, result)


def error_reply(
    req_id: Any, code: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return _error_reply(req_id, code, message, details)


class RequestError(Exception):
    """A request that must be answered with an error reply."""

    def __init__(
        self,
        code: str,
        message: str,
        req_id: Any = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.req_id = req_id
        self.details = dict(details or {})

    def reply(self) -> dict[str, Any]:
        return error_reply(self.req_id, self.code, self.message, self.details or None)


def parse_request(body: bytes) -> Request:
    """Decode and validate one request body; raises ``RequestError`` with the right code."""
    if len(body) > MAX_REQUEST_BYTES:
        raise RequestError(ErrorCode.TOO_LARGE, f"request exceeds {MAX_REQUEST_BYTES} bytes")
    try:
        msg = unpack(body)
    except CodecError as exc:
        raise RequestError(ErrorCode.BAD_REQUEST, str(exc)) from None
    try:
        return _parse_envelope(msg)
    except SchemaError as exc:
        raise RequestError(exc.code, str(exc), request_id_of(msg)) from None


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """ROUTER frames → (routing prefix to echo, body frames)."""
    if len(frames) >= 2 and frames[1] == b"":
        return frames[:2], frames[2:]
    return frames[:1], frames[1:]


Handler = Callable[[Request], Awaitable[dict[str, Any]]]


class FrontServer:
    """ROUTER loop: parses requests, runs ``handler`` per request in its own task."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, handler: Handler) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._handler = handler
        self._sock: zmq.asyncio.Socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        self.requests_served = 0

    def bind(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # Oversized frames up to 4x the limit get a too_large reply; beyond that ZeroMQ drops the
        # connection without reading the frame (memory safety).
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * MAX_REQUEST_BYTES)
        try:
            sock.bind(self._endpoint)
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        self._sock = sock

    async def serve(self) -> None:
        assert self._sock is not None, "bind() first"
        while True:
            frames = await self._sock.recv_multipart()
            routing, body = split_envelope(frames)
            if not routing or not routing[0]:
                continue
            task = asyncio.create_task(self._handle(routing, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, routing: list[bytes], body: list[bytes]) -> None:
        try:
            if len(body) != 1:
                raise RequestError(ErrorCode.BAD_REQUEST, "request must be exactly one frame")
            request = parse_request(body[0])
            reply = await self._handler(request)
        except RequestError as exc:
            reply = exc.reply()
        except Exception as exc:
            log.exception("front request failed")
            reply = error_reply(None, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        try:
            data = pack(reply)
        except Exception as exc:
            data = pack(error_reply(None, ErrorCode.INTERNAL, f"unencodable reply: {exc}"))
        self.requests_served += 1
        if self._sock is None:
            return
        async with self._send_lock:
            with contextlib.suppress(zmq.ZMQError):
                await self._sock.send_multipart([*routing, data])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
