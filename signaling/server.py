"""The signaling server: a thin websockets (asyncio) layer around ``SignalingRouter``.

Theory of operation
-------------------
Each accepted WebSocket gets an ``int`` handle, a bounded outbound queue and a writer task. The
reader feeds every frame to the router and puts the router's outputs on the target connections'
queues without awaiting them, so a client that stops reading can never stall another client's
reader: when its queue is full it is closed (code 1008).

Frame sizes: websockets accepts messages up to ``HARD_MAX_FRAME_BYTES`` (1 MiB); the router answers
anything above ``MAX_FRAME_BYTES`` (64 KiB) with a ``too_large`` error frame and keeps the
connection. A message above the hard limit is refused by websockets itself, which closes the
connection with code 1009 (message too big) — it is never read into memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from pathlib import Path
from typing import Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from signaling.admission import AdmissionSettings
from signaling.messages import MAX_FRAME_BYTES, ErrorCode, ErrorFrame, encode
from signaling.router import ConnId, Outgoing, RouterStats, SignalingRouter
from signaling.static import static_handler

logger = logging.getLogger(__name__)

HARD_MAX_FRAME_BYTES: Final = 1024 * 1024
OUTBOUND_QUEUE_FRAMES: Final = 256
CLOSE_SLOW_CONSUMER: Final = 1008
CLOSE_REPLACED: Final = 1000
CLOSE_REGISTER_TIMEOUT: Final = 1008
REGISTER_TIMEOUT_S: Final = 10.0
"""A connection that has not registered by then gets a ``not_registered`` error and is closed:
every operation needs registration, so an idle unregistered socket only holds resources."""


class _Closing:
    """Queue sentinel: close the connection after the frames queued before it."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Peer:
    __slots__ = ("queue", "writer", "ws")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | _Closing] = asyncio.Queue(OUTBOUND_QUEUE_FRAMES)
        self.writer: asyncio.Task[None] | None = None


class SignalingServer:
    """``await start()``, ``.port``, ``await serve_forever()``, ``await close()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rng: random.Random | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        hard_max_frame_bytes: int = HARD_MAX_FRAME_BYTES,
        register_timeout_s: float = REGISTER_TIMEOUT_S,
        web_root: Path | None = None,
        admission: AdmissionSettings | None = None,
    ) -> None:
        self.host = host
        self.web_root = web_root
        """Serve this directory over plain HTTP beside the WebSocket (``signaling.static``)."""
        self._register_timeout_s = register_timeout_s
        self._requested_port = port
        self._hard_max = hard_max_frame_bytes
        self.router = SignalingRouter(rng, max_frame_bytes=max_frame_bytes, admission=admission)
        self._peers: dict[ConnId, _Peer] = {}
        self._handles = itertools.count(1)
        self._server: Server | None = None
        self._changed = asyncio.Event()
        self._slow_consumers = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("SignalingServer already started")
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            max_size=self._hard_max,
            compression=None,  # no permessage-deflate: no compression bombs, no CPU surprises
            process_request=static_handler(self.web_root) if self.web_root else None,
        )
        logger.info("signaling server listening on ws://%s:%d", self.host, self.port)

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is None:
            raise RuntimeError("SignalingServer not started")
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("SignalingServer has no listening socket")

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def stats(self) -> RouterStats:
        return self.router.stats()

    @property
    def slow_consumers_closed(self) -> int:
        """Connections closed because they did not read their frames."""
        return self._slow_consumers

    @property
    def connection_count(self) -> int:
        return len(self._peers)

    async def wait_connection_count(self, count: int, timeout_s: float) -> None:
        """Wait until exactly ``count`` connections are open (tests, supervisors).
        Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout_s):
            while len(self._peers) != count:
                self._changed.clear()
                await self._changed.wait()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening and close every connection (code 1001). Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
        logger.info("signaling server closed")

    async def __aenter__(self) -> SignalingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- per connection --------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn = next(self._handles)
        peer = _Peer(ws)
        peer.writer = asyncio.create_task(self._write(conn, peer), name=f"signaling-writer-{conn}")
        self._peers[conn] = peer
        self._changed.set()
        loop = asyncio.get_running_loop()
        logger.debug("connection %d from %s", conn, ws.remote_address)
        deadline = loop.call_later(self._register_timeout_s, self._register_deadline, conn, peer)
        try:
            addr = ws.remote_address[0] if ws.remote_address else None
            self._dispatch(self.router.connect(conn, loop.time(), addr))
            async for data in ws:
                self._dispatch(self.router.receive(conn, data, loop.time()))
        except ConnectionClosed as exc:
            logger.debug("connection %d closed: %s", conn, exc)
        finally:
            deadline.cancel()
            node_id = self.router.node_id_of(conn)
            self.router.disconnect(conn)
            self._peers.pop(conn, None)
            self._changed.set()
            peer.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await peer.writer
            logger.debug("connection %d gone (id %s)", conn, node_id.hex()[:8] if node_id else "-")

    def _dispatch(self, outgoing: list[Outgoing]) -> None:
        for conn, text in outgoing:
            peer = self._peers.get(conn)
            if peer is None:
                continue
            try:
                peer.queue.put_nowait(text)
            except asyncio.QueueFull:
                logger.warning("connection %d does not read its frames; closing it", conn)
                self._slow_consumers += 1
                self._close_later(conn, peer, CLOSE_SLOW_CONSUMER, "too slow reading frames")
        for conn in self.router.connections_to_close():
            peer = self._peers.get(conn)
            if peer is not None:
                self._close_later(conn, peer, CLOSE_REPLACED, "replaced by a newer registration")

    def _register_deadline(self, conn: ConnId, peer: _Peer) -> None:
        if self._peers.get(conn) is not peer or self.router.node_id_of(conn) is not None:
            return
        logger.info(
            "connection %d did not register within %g s; closing it", conn, self._register_timeout_s
        )
        frame = ErrorFrame(
            ErrorCode.NOT_REGISTERED.value,
            f"no valid registration within {self._register_timeout_s:g} s; closing",
        )
        with contextlib.suppress(asyncio.QueueFull):
            peer.queue.put_nowait(encode(frame))
        self._close_later(conn, peer, CLOSE_REGISTER_TIMEOUT, "registration timeout")

    def _close_later(self, conn: ConnId, peer: _Peer, code: int, reason: str) -> None:
        """Close after the frames already queued; a connection whose queue is full does not read,
        so it cannot take part in a closing handshake either: abort its TCP connection."""
        # Forget it in the router now so nothing more is routed to it.
        self.router.disconnect(conn)
        self._peers.pop(conn, None)
        self._changed.set()
        try:
            peer.queue.put_nowait(_Closing(code, reason))
        except asyncio.QueueFull:
            if peer.writer is not None:
                peer.writer.cancel()
            peer.ws.transport.abort()

    async def _write(self, conn: ConnId, peer: _Peer) -> None:
        try:
            while True:
                item = await peer.queue.get()
                if isinstance(item, _Closing):
                    await peer.ws.close(item.code, item.reason)
                    return
                await peer.ws.send(item)
        except ConnectionClosed:
            logger.debug("connection %d closed while writing", conn)
