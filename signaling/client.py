"""The node's signaling client: register, stay registered, ask for peers, relay offers/answers.

Theory of operation
-------------------
``start()`` launches one background task that owns the WebSocket. It connects, answers the
server's challenge with a signed ``register`` and then reads frames until the connection drops.
It then reconnects with exponential backoff (``BACKOFF_INITIAL_S`` doubling to ``BACKOFF_MAX_S``,
"equal jitter": the sleep is uniform in [delay/2, delay]) until ``close()``. The backoff restarts
from the beginning after every successful registration; after the server reports that a newer
connection registered our ID (``already_registered``: the same key runs twice) the next delay
starts at the cap, so two processes sharing a key do not flap at full speed.

Callbacks (``on_offer``, ``on_answer``, ``on_registered``, ``on_error``) may be plain functions or
coroutine functions. Coroutines run as tasks so a slow callback (ICE gathering) never stops the
reader; exceptions from callbacks are logged, never propagated into the client.

Errors surface as follows: ``peers()`` raises ``SignalingRemoteError`` / ``SignalingTimeout`` /
``SignalingUnavailable``; ``send_offer``/``send_answer`` raise ``SignalingUnavailable`` when not
registered, and a later ``unknown_target`` (or any error frame that carries a ``cid``) is reported
through ``on_error(code, message, cid)``. A server frame that breaks the protocol is logged and
ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.uri import parse_uri

from node.identity import DOMAIN_SIGNALING, Identity
from node.ids import NodeId, short_id
from signaling import messages as sm
from signaling.errors import (
    SignalingError,
    SignalingRemoteError,
    SignalingTimeout,
    SignalingUnavailable,
)

logger = logging.getLogger(__name__)

BACKOFF_INITIAL_S: Final = 0.2
BACKOFF_MAX_S: Final = 5.0
OPEN_TIMEOUT_S: Final = 5.0
PEERS_TIMEOUT_S: Final = 5.0
CLIENT_MAX_FRAME_BYTES: Final = 1024 * 1024

RelayCallback = Callable[[NodeId, str, str], Awaitable[None] | None]
"""``(from_id, cid, sdp)``."""
ErrorCallback = Callable[[str, str, str | None], Awaitable[None] | None]
"""``(code, message, cid)``."""
RegisteredCallback = Callable[[], Awaitable[None] | None]


class SignalingClient:
    """See the module docstring. One instance per node; not reusable after ``close()``."""

    def __init__(
        self,
        url: str,
        identity: Identity,
        on_offer: RelayCallback,
        on_answer: RelayCallback,
        *,
        on_registered: RegisteredCallback | None = None,
        on_error: ErrorCallback | None = None,
        rng: random.Random | None = None,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        open_timeout_s: float = OPEN_TIMEOUT_S,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as exc:
            raise ValueError(f"not a WebSocket URL: {url!r}") from exc
        self.url = url
        self.identity = identity
        self._on_offer = on_offer
        self._on_answer = on_answer
        self._on_registered = on_registered
        self._on_error = on_error
        self._rng = rng if rng is not None else random.Random()
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._open_timeout_s = open_timeout_s

        self._ws: ClientConnection | None = None
        self._registered = asyncio.Event()
        self._closed = False
        self._replaced = False
        self._runner: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Task[None]] = set()
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[list[NodeId]]] = {}
        self.registrations = 0
        """How many times this client has registered (1 + successful re-registrations)."""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, timeout_s: float | None = None) -> None:
        """Start connecting in the background. With ``timeout_s``, also wait until registered
        (raises ``SignalingTimeout``; the client keeps trying in the background regardless)."""
        if self._closed:
            raise SignalingUnavailable("client is closed")
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="signaling-client")
        if timeout_s is not None:
            await self.wait_registered(timeout_s)

    async def close(self) -> None:
        """Stop reconnecting, close the connection, fail pending requests. Idempotent."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        self._lost(SignalingUnavailable("client closed"))
        tasks = list(self._callbacks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> SignalingClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    @property
    def connected(self) -> bool:
        """True while registered on a live connection."""
        return self._registered.is_set() and not self._closed

    async def wait_registered(self, timeout_s: float) -> None:
        """Return once registered; ``SignalingTimeout`` after ``timeout_s``."""
        if self._closed:
            raise SignalingUnavailable("client is closed")
        try:
            async with asyncio.timeout(timeout_s):
                await self._registered.wait()
        except TimeoutError:
            raise SignalingTimeout(
                f"not registered with {self.url} within {timeout_s:g} s"
            ) from None

    # -- requests --------------------------------------------------------------------------

    async def peers(
        self, n: int = sm.DEFAULT_PEERS_N, timeout_s: float = PEERS_TIMEOUT_S
    ) -> list[NodeId]:
        """Up to ``n`` registered node IDs closest to ours (``n`` clamped to 1..64)."""
        n = max(sm.MIN_PEERS_N, min(sm.MAX_PEERS_N, int(n)))
        rid = next(self._rids)
        future: asyncio.Future[list[NodeId]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self._send(sm.encode(sm.PeersRequest(n=n, rid=rid)))
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise SignalingTimeout(
                f"no peers reply from {self.url} within {timeout_s:g} s"
            ) from None
        finally:
            self._pending.pop(rid, None)

    async def send_offer(self, to: NodeId, cid: str, sdp: str) -> None:
        await self._relay(sm.RelayKind.OFFER, to, cid, sdp)

    async def send_answer(self, to: NodeId, cid: str, sdp: str) -> None:
        await self._relay(sm.RelayKind.ANSWER, to, cid, sdp)

    async def _relay(self, kind: sm.RelayKind, to: NodeId, cid: str, sdp: str) -> None:
        if len(to) != 32:
            raise ValueError("'to' must be a 32-byte node id")
        if len(cid) > sm.MAX_CID_CHARS:
            raise ValueError(f"cid is longer than {sm.MAX_CID_CHARS} characters")
        text = sm.encode(sm.Relay(kind=kind, to=NodeId(bytes(to)), cid=cid, sdp=sdp))
        if len(text) > sm.MAX_FRAME_BYTES:
            raise SignalingError(
                f"{kind.value} frame of {len(text)} bytes exceeds the server limit"
            )
        await self._send(text)

    async def _send(self, text: str) -> None:
        ws = self._ws
        if ws is None or not self._registered.is_set():
            raise SignalingUnavailable(f"not registered with {self.url}")
        try:
            await ws.send(text)
        except ConnectionClosed as exc:
            raise SignalingUnavailable(f"connection to {self.url} lost") from exc

    # -- connection loop -------------------------------------------------------------------

    def _next_delay(self, attempt: int) -> float:
        base = min(self._backoff_max_s, self._backoff_initial_s * (2.0 ** min(attempt, 32)))
        return self._rng.uniform(base / 2, base)

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            registered_before = self.registrations
            try:
                async with connect(
                    self.url,
                    open_timeout=self._open_timeout_s,
                    max_size=CLIENT_MAX_FRAME_BYTES,
                    compression=None,
                ) as ws:
                    self._ws = ws
                    async for data in ws:
                        await self._on_frame(ws, data)
            except (OSError, TimeoutError, WebSocketException) as exc:
                logger.debug("signaling connection to %s failed: %r", self.url, exc)
            except Exception:
                logger.exception("signaling client error; reconnecting")
            finally:
                self._ws = None
                self._lost(SignalingUnavailable(f"connection to {self.url} lost"))
            if self._closed:
                return
            if self.registrations != registered_before:
                attempt = 0
            if self._replaced:
                self._replaced = False
                attempt = max(attempt, 32)
            delay = self._next_delay(attempt)
            attempt += 1
            logger.info("signaling: reconnecting to %s in %.2f s", self.url, delay)
            await asyncio.sleep(delay)

    def _lost(self, error: SignalingError) -> None:
        if self._registered.is_set():
            logger.info("signaling: lost registration with %s", self.url)
        self._registered.clear()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def _on_frame(self, ws: ClientConnection, data: str | bytes) -> None:
        try:
            message = sm.parse_server_message(sm.decode_json_object(data))
        except sm.FrameError as exc:
            logger.warning("signaling: ignoring bad frame from server: %s", exc.message)
            return
        await self._dispatch(ws, message)

    async def _dispatch(self, ws: ClientConnection, message: sm.ServerMessage) -> None:
        match message:
            case sm.Challenge(nonce=nonce):
                register = sm.Register(
                    node_id=self.identity.node_id,
                    public_key=self.identity.public_key,
                    sig=self.identity.sign(DOMAIN_SIGNALING + nonce),
                )
                await ws.send(sm.encode(register))
            case sm.Registered(node_id=node_id):
                if node_id != self.identity.node_id:
                    logger.warning("signaling: server registered us as %s?", short_id(node_id))
                    return
                self.registrations += 1
                self._registered.set()
                logger.info("signaling: registered with %s as %s", self.url, short_id(node_id))
                if self._on_registered is not None:
                    self._call(self._on_registered)
            case sm.PeersReply(peers=peers, rid=rid):
                future = self._pending_for(rid)
                if future is not None and not future.done():
                    future.set_result([p for p in peers if p != self.identity.node_id])
            case sm.Relay(kind=kind, cid=cid, sdp=sdp, sender=sender):
                assert sender is not None  # parse_server_message requires "from"
                callback = self._on_offer if kind is sm.RelayKind.OFFER else self._on_answer
                self._call(callback, sender, cid, sdp)
            case sm.ErrorFrame():
                self._on_error_frame(message)

    def _pending_for(self, rid: object) -> asyncio.Future[list[NodeId]] | None:
        if isinstance(rid, int) and not isinstance(rid, bool):
            return self._pending.get(rid)
        return None

    def _on_error_frame(self, frame: sm.ErrorFrame) -> None:
        rid = frame.rid
        future = self._pending_for(rid)
        if future is not None:
            if not future.done():
                future.set_exception(SignalingRemoteError(frame.code, frame.message))
            return
        if frame.code == sm.ErrorCode.ALREADY_REGISTERED:
            logger.warning("signaling: %s", frame.message)
            self._replaced = True
        elif frame.code == sm.ErrorCode.BAD_SIGNATURE:
            logger.error("signaling: registration refused: %s", frame.message)
        else:
            logger.info("signaling: error %s (cid %s): %s", frame.code, frame.cid, frame.message)
        if self._on_error is not None:
            self._call(self._on_error, frame.code, frame.message, frame.cid)

    def _call(self, callback: Callable[..., Awaitable[None] | None], *args: object) -> None:
        try:
            result = callback(*args)
        except Exception:
            logger.exception("signaling callback %r failed", callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._await_callback(result, callback))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    @staticmethod
    async def _await_callback(result: Awaitable[None], callback: object) -> None:
        try:
            await result
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("signaling callback %r failed", callback)
